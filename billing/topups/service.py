"""addFunds: a top-up charged to a saved card, credited exactly once whatever retries, crashes or webhooks do.

Unlike other services this one takes a session *factory* and commits per step, because a Stripe call sits in
the middle: the pending entry is committed *before* Stripe is called, so a crash after Stripe charged leaves a
row that webhooks and reconciliation can find and settle; holding one transaction (and the account lock) open
across the network call would lose that row on a crash and block the account meanwhile.

  1. gates, then a pending top-up keyed by the client's idempotency key        (commit)
  2. the charge, keyed by our entry id, so Stripe never runs it twice          (no transaction open)
  3. the outcome applied through the ledger: credited, failed, or left pending (commit)
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.repository import AccountRepository
from billing.auto_recharge import settlement as recharge_settlement
from billing.company.repository import CompanyRepository, CompanyRow
from billing.company.service import missing_company_fields
from billing.config import Settings
from billing.db import SessionFactory, unit_of_work
from billing.errors import DomainError, NotFound, as_named_here
from billing.ledger import service as ledger
from billing.ledger.repository import LedgerRepository
from billing.money import InvalidAmount, format_money, to_minor
from billing.payment_methods.repository import PaymentMethodRow
from billing.payment_methods.service import account_methods
from billing.scope import Scope
from billing.stripe_gateway import (
    ACCOUNT_ID_KEY,
    CANCELED_CODE,
    TRANSACTION_ID_KEY,
    ChargeResult,
    StripeGateway,
)
from billing.topups.repository import TopUpRepository
from models import Account, Company, PaymentMethod, Transaction, TransactionKind, TransactionStatus
from models.types import utcnow


class CompanyIncomplete(DomainError):
    def __init__(self, missing_fields: list[str]) -> None:
        self.missing_fields = missing_fields
        super().__init__(self.describe(as_named_here))

    def describe(self, field_name: Callable[[str], str]) -> str:
        """The message for a person, naming each field as `field_name` spells it."""
        return "complete the company profile first: " + ", ".join(map(field_name, self.missing_fields))


class PaymentMethodRequired(DomainError):
    """The account has no saved card yet."""


class UnknownPaymentMethod(DomainError):
    """The named card is not one of this account's."""


class AmountOutOfRange(DomainError):
    def __init__(self, minimum_minor: int, maximum_minor: int, currency: str) -> None:
        self.minimum_minor = minimum_minor
        self.maximum_minor = maximum_minor
        self.currency = currency
        super().__init__(self.describe("en_US"))

    def describe(self, locale: str) -> str:
        """The message for a person, with money written the way `locale` writes it (as `formatted` fields are)."""
        minimum, maximum = (
            format_money(minor, self.currency, locale) for minor in (self.minimum_minor, self.maximum_minor)
        )
        return f"top-ups are between {minimum} and {maximum}"


class IdempotencyConflict(DomainError):
    """The idempotency key was used before for a different amount or card."""


class PaymentDeclined(DomainError):
    def __init__(self, transaction: Transaction) -> None:
        super().__init__(transaction.failure_message or "The payment was declined.")
        self.code = transaction.failure_code or "card_declined"
        self.transaction = transaction


@dataclass(frozen=True)
class Readiness:
    """Whether Add funds can go ahead, and what to complete first when not: the gate `add_funds` applies."""

    missing_company_fields: list[str]
    has_payment_method: bool

    @property
    def ready(self) -> bool:
        return not self.missing_company_fields and self.has_payment_method

    def check(self) -> None:
        """Raise the gate's first failure, in the order the page asks for things."""
        if self.missing_company_fields:
            raise CompanyIncomplete(self.missing_company_fields)
        if not self.has_payment_method:
            raise PaymentMethodRequired("add a payment method first")


def readiness(
    company: Company | CompanyRow | None, methods: Sequence[PaymentMethod | PaymentMethodRow]
) -> Readiness:
    return Readiness(missing_company_fields(company), bool(methods))


@dataclass(frozen=True)
class AddFundsRequest:
    account_id: int
    payment_method_id: int
    amount: str  # a decimal in the account's billing currency
    idempotency_key: str


@dataclass(frozen=True)
class TopUp:
    status: Literal["succeeded", "requires_action", "processing"]
    transaction: Transaction
    balance_minor: int
    client_secret: str | None  # for requires_action: the page finishes 3-D Secure with Stripe.js


@dataclass(frozen=True)
class _Pending:
    transaction: Transaction
    created: bool
    customer_id: str
    stripe_payment_method_id: str


def _ledger_key(client_key: str) -> str:
    # Client keys share the (account, key) space with other postings; the prefix keeps them apart.
    return f"top-up:{client_key}"


# The longest client key whose ledger key still fits its column.
MAX_IDEMPOTENCY_KEY_LENGTH = (
    Transaction.__table__.c.idempotency_key.type.length  # type: ignore[attr-defined]
    - len(_ledger_key(""))
)


def stripe_idempotency_key(transaction_id: int) -> str:
    return f"top-up-{transaction_id}"


async def add_funds(
    factory: SessionFactory,
    scope: Scope,
    gateway: StripeGateway,
    settings: Settings,
    request: AddFundsRequest,
) -> TopUp:
    """Top up an account of `scope` (another account is NotFound, as a missing one)."""
    pending = await _begin(factory, scope, settings, request)
    entry = pending.transaction
    assert entry.id is not None
    if not pending.created:
        return await _replay(factory, scope, gateway, entry)
    # PaymentProviderUnavailable propagates and leaves the entry pending: reconciliation settles it from what
    # Stripe did (or fails it when nothing was charged).
    result = await gateway.charge(
        customer_id=pending.customer_id,
        payment_method=pending.stripe_payment_method_id,
        amount_minor=entry.amount_minor,
        currency=entry.currency,
        idempotency_key=stripe_idempotency_key(entry.id),
        off_session=False,
        description=entry.description,
        metadata={TRANSACTION_ID_KEY: str(entry.id), ACCOUNT_ID_KEY: str(entry.account_id)},
    )
    return await _finish(factory, scope, entry.id, result)


async def _begin(
    factory: SessionFactory, scope: Scope, settings: Settings, request: AddFundsRequest
) -> _Pending:
    try:
        async with unit_of_work(factory) as session:
            return await _gate_and_post(session, scope, settings, request)
    except IntegrityError:
        # SQLite: a concurrent request with the same key inserted first; the second look finds it.
        async with unit_of_work(factory) as session:
            return await _gate_and_post(session, scope, settings, request)


async def _account(session: AsyncSession, scope: Scope, account_id: int) -> Account:
    account = (await AccountRepository(session, scope).by_ids([account_id])).get(account_id)
    if account is None:
        raise NotFound("account not found")
    return account


async def _gate_and_post(
    session: AsyncSession, scope: Scope, settings: Settings, request: AddFundsRequest
) -> _Pending:
    account = await _account(session, scope, request.account_id)
    assert account.id is not None
    key = _ledger_key(request.idempotency_key)
    existing = await ledger.find_by_idempotency_key(session, scope, account.id, key)
    if existing is not None:
        _check_same_request(existing, request)
        return _Pending(existing, False, "", "")

    methods = await account_methods(session, scope, account.id)
    readiness(await CompanyRepository(session, scope).of_account(account.id), methods).check()
    method = _payment_method(methods, request.payment_method_id)
    amount_minor = _amount(settings, request.amount, account.currency)
    # Saving a card created the customer; without one there is no card Stripe could charge.
    customer_id = account.stripe_customer_id
    if customer_id is None:
        raise PaymentMethodRequired("add a payment method first")

    posting = await ledger.post(
        session,
        scope,
        account_id=account.id,
        kind=TransactionKind.TOP_UP,
        amount_minor=amount_minor,
        description=f"Top-up with {method.brand.capitalize()} •••• {method.last4}",
        idempotency_key=key,
        status=TransactionStatus.PENDING,
        payment_method_id=method.id,
    )
    if not posting.created:
        _check_same_request(posting.transaction, request)
    return _Pending(posting.transaction, posting.created, customer_id, method.stripe_payment_method_id)


def _payment_method(methods: Sequence[PaymentMethod], payment_method_id: int) -> PaymentMethod:
    for method in methods:
        if method.id == payment_method_id:
            return method
    raise UnknownPaymentMethod("choose one of this account's payment methods")


def _amount(settings: Settings, amount: str, currency: str) -> int:
    minor = to_minor(amount, currency)
    if minor <= 0:
        raise InvalidAmount("must be more than zero")
    check_top_up_range(settings, minor, currency)
    return minor


def check_top_up_range(settings: Settings, minor: int, currency: str) -> None:
    """One top-up (by hand or by auto-recharge) stays within the configured bounds."""
    if not settings.min_top_up_minor <= minor <= settings.max_top_up_minor:
        raise AmountOutOfRange(settings.min_top_up_minor, settings.max_top_up_minor, currency)


def _check_same_request(entry: Transaction, request: AddFundsRequest) -> None:
    try:
        same_amount = to_minor(request.amount, entry.currency) == entry.amount_minor
    except InvalidAmount:
        same_amount = False
    if not same_amount or entry.payment_method_id != request.payment_method_id:
        raise IdempotencyConflict("this idempotency key was already used for a different amount or card")


async def _replay(factory: SessionFactory, scope: Scope, gateway: StripeGateway, entry: Transaction) -> TopUp:
    """The first request's result. A pending entry is looked up in Stripe, never charged again."""
    assert entry.id is not None
    if entry.status != TransactionStatus.PENDING or entry.stripe_payment_intent_id is None:
        # Settled, or the first request is still talking to Stripe (or crashed; reconciliation heals that).
        async with unit_of_work(factory) as session:
            account = await _account(session, scope, entry.account_id)
            return _outcome(entry, account.balance_minor, None)
    state = await gateway.retrieve_payment_intent(entry.stripe_payment_intent_id)
    return await _finish(factory, scope, entry.id, state.charge)


async def _finish(factory: SessionFactory, scope: Scope, entry_id: int, result: ChargeResult) -> TopUp:
    async with unit_of_work(factory) as session:
        entry = await apply_charge_result(session, scope, entry_id, result)
        account = await ledger.lock_account(session, scope, entry.account_id)
        balance = account.balance_minor
    return _outcome(entry, balance, result.client_secret)


def _outcome(entry: Transaction, balance_minor: int, client_secret: str | None) -> TopUp:
    if entry.status == TransactionStatus.SUCCEEDED:
        return TopUp("succeeded", entry, balance_minor, None)
    if entry.status == TransactionStatus.PENDING:
        status: Literal["requires_action", "processing"] = (
            "requires_action" if client_secret else "processing"
        )
        return TopUp(status, entry, balance_minor, client_secret)
    raise PaymentDeclined(entry)


async def apply_charge_result(
    session: AsyncSession, scope: Scope, entry_id: int, result: ChargeResult, *, now: datetime | None = None
) -> Transaction:
    """Settle a top-up or auto-recharge from what Stripe says happened; safe to repeat and out of order.

    Used by addFunds itself, the recharge worker, webhooks and reconciliation: whichever comes first settles,
    the rest see a settled entry and change nothing. An auto-recharge's recharge follows in the same
    transaction, so the monthly limit counts the charge however it was settled.
    """
    now = now or utcnow()
    if result.status == "succeeded":
        entry = await ledger.settle(
            session,
            scope,
            entry_id,
            TransactionStatus.SUCCEEDED,
            stripe_payment_intent_id=result.payment_intent_id,
        )
        if entry.status != TransactionStatus.SUCCEEDED:
            await _credit_late_success(session, scope, entry, result)
        await recharge_settlement.follow_settlement(session, scope, entry, paid=True, now=now)
        return entry
    if result.status == "declined":
        status = (
            TransactionStatus.CANCELED if result.decline_code == CANCELED_CODE else TransactionStatus.FAILED
        )
        entry = await ledger.settle(
            session,
            scope,
            entry_id,
            status,
            failure_code=result.decline_code,
            failure_message=result.message,
            stripe_payment_intent_id=result.payment_intent_id,
        )
        paid = entry.status == TransactionStatus.SUCCEEDED  # a stale failure of an entry that was paid since
        await recharge_settlement.follow_settlement(session, scope, entry, paid=paid, now=now)
        return entry
    pending = await LedgerRepository(session, scope).entry(entry_id)
    if pending is None:
        raise NotFound(f"transaction {entry_id} not found")
    if result.payment_intent_id is not None and pending.stripe_payment_intent_id is None:
        # Still pending: remember the PaymentIntent so webhooks, retries and reconciliation can find it.
        top_ups = TopUpRepository(session, scope)
        await top_ups.link_intent(entry_id, result.payment_intent_id)
        await top_ups.reread(pending)
    return pending


async def _credit_late_success(
    session: AsyncSession, scope: Scope, entry: Transaction, result: ChargeResult
) -> None:
    """Stripe says paid after we recorded a failure (a retried 3-D Secure, or a charge that landed after
    reconciliation found nothing): statuses never move back, so the money is credited by a new entry, once per
    PaymentIntent (its key), whichever of the webhook, the worker or reconciliation reports it first."""
    assert entry.id is not None
    await ledger.post(
        session,
        scope,
        account_id=entry.account_id,
        kind=TransactionKind.ADJUSTMENT,
        amount_minor=entry.amount_minor,
        description=f"{entry.description} (paid after first failing)",
        idempotency_key=f"late-success:{result.payment_intent_id or entry.id}",
    )
    if result.payment_intent_id is not None and entry.stripe_payment_intent_id is None:
        # Failed without a PaymentIntent (reconciliation found none): link the one that paid, so its later
        # events find this entry by id, and reconciliation stops looking for it.
        await TopUpRepository(session, scope).link_intent(entry.id, result.payment_intent_id)


async def entry_for_intent(
    session: AsyncSession, scope: Scope, payment_intent_id: str, metadata: dict[str, str]
) -> Transaction | None:
    """The top-up or auto-recharge a PaymentIntent claims to pay for, as far as our ledger can tell.

    By the PaymentIntent id we stored; else by the entry and account ids in its metadata, and then only an
    entry that has no PaymentIntent yet (one entry is one charge). A claim by metadata is only a claim: the
    caller confirms it with Stripe before settling anything on it (billing.stripe_webhooks.service).
    """
    by_intent = await entry_paid_by(session, scope, payment_intent_id)
    if by_intent is not None:
        return by_intent
    raw_id = metadata.get(TRANSACTION_ID_KEY, "")
    # ASCII digits within the id column's range: `int()` takes other digits, and the database refuses more.
    if not (raw_id.isascii() and raw_id.isdigit() and len(raw_id) <= 10 and int(raw_id) <= _MAX_ENTRY_ID):
        return None
    entry = await LedgerRepository(session, scope).entry(int(raw_id))
    if (
        entry is None
        # None: awaiting its PaymentIntent. This one: stored between our two statements (addFunds settling).
        or entry.stripe_payment_intent_id not in (None, payment_intent_id)
        or entry.kind not in (TransactionKind.TOP_UP, TransactionKind.AUTO_RECHARGE)
        or metadata.get(ACCOUNT_ID_KEY) != str(entry.account_id)
    ):
        return None
    return entry


_MAX_ENTRY_ID = 2**31 - 1


async def entry_paid_by(session: AsyncSession, scope: Scope, payment_intent_id: str) -> Transaction | None:
    """The top-up or auto-recharge whose stored PaymentIntent this is."""
    return await TopUpRepository(session, scope).paid_by(payment_intent_id)
