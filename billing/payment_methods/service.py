"""Saved cards: Stripe holds them; this module keeps the local mirror (brand, last4, expiry, default)."""

import logging

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.auto_recharge.repository import AutoRechargeRepository
from billing.db import SessionFactory, read_session, unit_of_work
from billing.errors import DomainError, NotFound
from billing.events import service as events
from billing.payment_methods import customers
from billing.payment_methods.repository import PaymentMethodRepository
from billing.scope import Scope
from billing.stripe_gateway import Card, PaymentProviderRejected, StripeGateway
from models import PaymentMethod

logger = logging.getLogger(__name__)

NOT_FOUND = "payment method not found"


class PaymentMethodNotOwned(DomainError):
    """The card is saved on another Stripe customer."""


class PaymentMethodInUse(DomainError):
    """The card pays for auto-recharge; name another card to take over before deleting it."""


async def account_methods(session: AsyncSession, scope: Scope, account_id: int) -> list[PaymentMethod]:
    """The account's cards, oldest first (none for an account outside the scope)."""
    return await PaymentMethodRepository(session, scope).of_account(account_id)


async def get_owned(
    session: AsyncSession, scope: Scope, account_id: int, payment_method_id: int
) -> PaymentMethod:
    """The account's card, or NotFound for a missing one and another account's alike."""
    method = await PaymentMethodRepository(session, scope).get(payment_method_id)
    if method is None or method.account_id != account_id:
        raise NotFound(NOT_FOUND)
    return method


async def _mirror(session: AsyncSession, scope: Scope, account_id: int, card: Card) -> PaymentMethod:
    """Insert or refresh the mirror row; an account's first card becomes its default."""
    cards = PaymentMethodRepository(session, scope)
    method = await cards.by_stripe_id(card.id)
    if method is None:
        has_default = any(m.is_default for m in await cards.of_account(account_id))
        method = PaymentMethod(
            account_id=account_id,
            stripe_payment_method_id=card.id,
            brand=card.brand,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            is_default=not has_default,
        )
        cards.add(method)
    elif method.account_id != account_id:
        raise PaymentMethodNotOwned("this card belongs to another account")
    added = method.id is None
    method.brand, method.last4 = card.brand, card.last4
    method.exp_month, method.exp_year = card.exp_month, card.exp_year
    try:
        await cards.flush()
    except IntegrityError:
        if not added:
            raise
        # The card is mirrored already, for an account outside the scope (its id is unique).
        raise PaymentMethodNotOwned("this card belongs to another account") from None
    if added:
        assert method.id is not None
        events.record(
            session,
            events.PaymentMethodAdded(account_id, method.id, method.brand, method.last4, method.is_default),
        )
    return method


async def create_setup_intent(
    factory: SessionFactory, scope: Scope, gateway: StripeGateway, account_id: int
) -> str:
    """The client secret Stripe Elements needs to collect a card for this account's customer."""
    return await gateway.create_setup_intent(await customers.customer_id(factory, scope, gateway, account_id))


async def _customers_card(gateway: StripeGateway, stripe_payment_method_id: str, customer: str) -> Card:
    """The card, attached to `customer` first if no customer has it yet.

    An unknown id and another customer's card get the same NotFound, message included: trying ids must not
    tell which cards exist.
    """
    try:
        card = await gateway.retrieve_card(stripe_payment_method_id)
    except PaymentProviderRejected:  # no such payment method, or not a card
        raise NotFound(NOT_FOUND) from None
    if card.customer_id is None:
        return await gateway.attach_card(stripe_payment_method_id, customer)
    if card.customer_id != customer:
        raise NotFound(NOT_FOUND)
    return card


async def attach(
    factory: SessionFactory,
    scope: Scope,
    gateway: StripeGateway,
    account_id: int,
    stripe_payment_method_id: str,
) -> PaymentMethod:
    """Record a card the frontend confirmed, after checking with Stripe that it is this customer's."""
    customer = await customers.customer_id(factory, scope, gateway, account_id)
    card = await _customers_card(gateway, stripe_payment_method_id, customer)
    async with read_session(factory) as session:
        first_card = not any(m.is_default for m in await account_methods(session, scope, account_id))
    if first_card:
        # Stripe first, so the mirror never shows a default that Stripe's invoices and portal don't.
        await gateway.set_default_card(customer, card.id)
    async with unit_of_work(factory) as session:
        return await _mirror(session, scope, account_id, card)


async def set_default(
    factory: SessionFactory, scope: Scope, gateway: StripeGateway, account_id: int, payment_method_id: int
) -> PaymentMethod:
    """The account's default card, here and in Stripe (its invoices and customer portal show the same one)."""
    async with read_session(factory) as session:
        method = await get_owned(session, scope, account_id, payment_method_id)
    # Stripe first: if it cannot be reached, the mirror keeps matching it.
    await gateway.set_default_card(
        await customers.customer_id(factory, scope, gateway, account_id), method.stripe_payment_method_id
    )
    async with unit_of_work(factory) as session:
        cards = PaymentMethodRepository(session, scope)
        method = await get_owned(session, scope, account_id, payment_method_id)
        if method.is_default:
            return method
        assert method.id is not None
        # Clear first: a unique partial index allows one default per account at any moment.
        previous_id = next(iter(await cards.clear_default(account_id, method.id)), None)
        await cards.flush()
        method.is_default = True
        await cards.flush()
        events.record(session, events.DefaultPaymentMethodChanged(account_id, previous_id, method.id))
    return method


async def delete(
    factory: SessionFactory,
    scope: Scope,
    gateway: StripeGateway,
    account_id: int,
    payment_method_id: int,
    *,
    replacement_id: int | None = None,
) -> None:
    """Detach the card in Stripe and drop it from the mirror.

    Refused while auto-recharge pays with it, unless `replacement_id` names another of the account's cards,
    which then pays for auto-recharge (and becomes the default if the deleted card was). The checks run
    before Stripe is called and again, with the write, after it: the card may have changed meanwhile.
    """
    async with read_session(factory) as session:
        method, _ = await _deletable(session, scope, account_id, payment_method_id, replacement_id)
    try:
        await gateway.detach_card(method.stripe_payment_method_id)
    except PaymentProviderRejected as error:
        # Already detached or gone in Stripe (e.g. from the portal): the mirror only has to follow.
        logger.info("detaching %s: %s", method.stripe_payment_method_id, error)
    async with unit_of_work(factory) as session:
        try:
            method, replacement = await _deletable(
                session, scope, account_id, payment_method_id, replacement_id
            )
        except NotFound:
            return  # removed meanwhile (a webhook for the detach we just did): nothing left to do
        await _remove(session, scope, method, preferred_default=replacement)


async def _deletable(
    session: AsyncSession, scope: Scope, account_id: int, payment_method_id: int, replacement_id: int | None
) -> tuple[PaymentMethod, PaymentMethod | None]:
    """The card to delete and its replacement, with auto-recharge moved over to the replacement."""
    method = await get_owned(session, scope, account_id, payment_method_id)
    replacement = None
    if replacement_id is not None:
        replacement = await get_owned(session, scope, account_id, replacement_id)
        if replacement.id == method.id:
            raise PaymentMethodInUse("the replacement must be another card")
    settings = await AutoRechargeRepository(session, scope).settings(account_id)
    if settings is not None and settings.payment_method_id == method.id:
        if replacement is None:
            raise PaymentMethodInUse("auto-recharge pays with this card; choose another card for it first")
        fields = events.AutoRechargeSettingsChanged.FIELDS
        before = events.snapshot(settings, fields)
        settings.payment_method_id = replacement.id
        events.record(
            session, events.AutoRechargeSettingsChanged(account_id, before, events.snapshot(settings, fields))
        )
    return method, replacement


async def _remove(
    session: AsyncSession,
    scope: Scope,
    method: PaymentMethod,
    *,
    preferred_default: PaymentMethod | None = None,
) -> None:
    cards = PaymentMethodRepository(session, scope)
    was_default = method.is_default
    await cards.remove(method)
    await cards.flush()
    assert method.id is not None
    events.record(
        session, events.PaymentMethodRemoved(method.account_id, method.id, method.brand, method.last4)
    )
    if not was_default:
        return
    remaining = await cards.of_account(method.account_id)
    successor = preferred_default or (remaining[-1] if remaining else None)  # else the newest card
    if successor is not None:
        successor.is_default = True
        await cards.flush()
        assert successor.id is not None
        events.record(session, events.DefaultPaymentMethodChanged(method.account_id, method.id, successor.id))


async def sync_attached(session: AsyncSession, scope: Scope, card: Card) -> PaymentMethod | None:
    """A card attached or updated in Stripe (portal, SetupIntent): mirror it for the customer's account."""
    if card.customer_id is None:
        return None
    account = await PaymentMethodRepository(session, scope).account_of_customer(card.customer_id)
    if account is None or account.id is None:
        return None  # a customer this gateway does not know
    return await _mirror(session, scope, account.id, card)


async def sync_detached(session: AsyncSession, scope: Scope, stripe_payment_method_id: str) -> None:
    method = await PaymentMethodRepository(session, scope).by_stripe_id(stripe_payment_method_id)
    if method is not None:
        await _remove(session, scope, method)
