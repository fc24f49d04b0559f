"""Stripe webhooks: verified, read strictly, money moved only for a charge of ours, every event recorded once.

Events arrive late, twice and out of order, and a validly signed one may still be about a charge that is not
ours (a Stripe account shared with another system, a leaked signing secret). So:
- the signature, and when it was made (neither too long ago nor in the future), is checked on the raw bytes;
- the body is read strictly (billing.stripe_webhooks.events); a signed body that cannot be read is recorded as
  rejected and answered 400;
- money moves only for a PaymentIntent of ours: the one stored on the entry, or, for an entry that has none
  yet, one that Stripe itself says names that entry and its account and charges its amount and currency;
  the event's own amount and currency must match the entry as well. Anything else is recorded as rejected,
  with the reason, and logged; nothing else is written;
- each event id is recorded in the same transaction as its effect, so a redelivery, a concurrent delivery
  or a replayed forgery does nothing more; statuses only move forward (the ledger refuses anything else).

Stripe is never called with a database transaction open: a short read finds what needs confirming, Stripe
is asked, then one short transaction records the event and applies it after checking again.
"""

import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.db import SessionFactory, read_session, unit_of_work
from billing.ledger import service as ledger
from billing.ledger.repository import LedgerRepository
from billing.payment_methods import service as payment_methods
from billing.scope import Scope
from billing.stripe_gateway import (
    ACCOUNT_ID_KEY,
    TRANSACTION_ID_KEY,
    Card,
    PaymentIntentState,
    PaymentProviderRejected,
    StripeGateway,
)
from billing.stripe_webhooks.events import (
    ChargeRefunded,
    Event,
    MalformedEvent,
    PaymentMethodChanged,
    PaymentMethodDetached,
    SetupIntentSucceeded,
    Unhandled,
    parse_event,
)
from billing.stripe_webhooks.repository import StripeEventRepository
from billing.topups import service as payments
from models import Transaction, TransactionKind, TransactionStatus
from models.stripe_webhooks import StripeEventOutcome

logger = logging.getLogger(__name__)

_MAX_REASON = 500  # the stripe_event.rejection_reason column
# Stripe's events may be about any account; their signature, not a principal, says they are Stripe's.
SYSTEM = Scope.system("Stripe webhooks")


class Outcome(StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"  # recorded before: nothing done now
    REJECTED = "rejected"  # readable, but not acted on (not a charge of ours); recorded with the reason
    MALFORMED = "malformed"  # signed, but not an event we can read; recorded with the reason


# Applies an event inside the transaction that records it: None when applied, else why it was rejected
# (decided before anything is written).
Settle = Callable[[AsyncSession], Awaitable[str | None]]


async def handle(
    factory: SessionFactory,
    gateway: StripeGateway,
    payload: bytes,
    signature: str | None,
    *,
    future_tolerance: int,
) -> Outcome:
    """Verify, read, confirm and apply one delivery.

    Raises InvalidWebhook (bad signature, signed too long ago or in the future) before anything is written,
    and PaymentProviderUnavailable when Stripe could not confirm a PaymentIntent (nothing written either:
    Stripe delivers again).
    """
    gateway.verify_webhook_signature(payload, signature, future_tolerance=future_tolerance)
    try:
        event = parse_event(payload)
    except MalformedEvent as malformed:
        await _record_once(factory, malformed.key, malformed.type, _refuse(malformed.reason))
        return Outcome.MALFORMED
    async with read_session(factory) as session:
        if await StripeEventRepository(session, SYSTEM).seen(event.id) is not None:
            return Outcome.DUPLICATE  # before asking Stripe anything
    return await _record_once(factory, event.id, event.type, await _prepare(factory, gateway, event))


async def _record_once(factory: SessionFactory, event_id: str, event_type: str, settle: Settle) -> Outcome:
    try:
        async with unit_of_work(factory) as session:
            stripe_events = StripeEventRepository(session, SYSTEM)
            if await stripe_events.seen(event_id) is not None:
                return Outcome.DUPLICATE
            record = await stripe_events.record(event_id, event_type)
            reason = await settle(session)
            if reason is None:
                return Outcome.PROCESSED
            record.outcome = StripeEventOutcome.REJECTED
            record.rejection_reason = reason[:_MAX_REASON]
    except IntegrityError:
        async with read_session(factory) as session:
            if await StripeEventRepository(session, SYSTEM).seen(event_id) is None:
                raise  # some other conflict: fail, and let Stripe deliver again
        logger.info("stripe event %s: delivered concurrently, recorded once", event_id)
        return Outcome.DUPLICATE
    logger.warning("stripe event %s (%s) rejected: %s", event_id, event_type, reason)
    return Outcome.REJECTED


def _refuse(reason: str) -> Settle:
    async def settle(_session: AsyncSession) -> str:
        return reason

    return settle


async def _acknowledge(_session: AsyncSession) -> None:
    return None


async def _prepare(factory: SessionFactory, gateway: StripeGateway, event: Event) -> Settle:
    """What the event will do once recorded, after asking Stripe whatever must be asked (no transaction open)."""
    match event.object:
        case PaymentIntentState() as intent:
            return await _payment_intent(factory, gateway, intent)
        case ChargeRefunded() as refund:
            return lambda session: _charge_refunded(session, refund)
        case PaymentMethodChanged(card=Card() as card):
            return _card_attached(card)
        case PaymentMethodDetached(payment_method_id=method_id):
            return _card_detached(method_id)
        case SetupIntentSucceeded(payment_method_id=str() as method_id):
            try:
                return _card_attached(await gateway.retrieve_card(method_id))
            except PaymentProviderRejected:
                return _refuse(f"Stripe does not know payment method {method_id}")
        case PaymentMethodChanged() | SetupIntentSucceeded() | Unhandled():
            logger.debug("stripe event %s (%s): acknowledged", event.id, event.type)
            return _acknowledge


def _card_attached(card: Card) -> Settle:
    async def settle(session: AsyncSession) -> None:
        await payment_methods.sync_attached(session, SYSTEM, card)

    return settle


def _card_detached(stripe_payment_method_id: str) -> Settle:
    async def settle(session: AsyncSession) -> None:
        await payment_methods.sync_detached(session, SYSTEM, stripe_payment_method_id)

    return settle


async def _payment_intent(
    factory: SessionFactory, gateway: StripeGateway, intent: PaymentIntentState
) -> Settle:
    async with read_session(factory) as session:
        claimed = await payments.entry_for_intent(session, SYSTEM, intent.id, intent.metadata)
    confirmed = None
    if claimed is not None and claimed.stripe_payment_intent_id is None:
        # Only the metadata ties this PaymentIntent to the entry: Stripe must say it is really ours.
        try:
            confirmed = await gateway.retrieve_payment_intent(intent.id)
        except PaymentProviderRejected:
            confirmed = None  # Stripe does not know it

    async def settle(session: AsyncSession) -> str | None:
        # Looked up again: the entry may have been settled, or learnt its PaymentIntent, meanwhile.
        entry = await payments.entry_for_intent(session, SYSTEM, intent.id, intent.metadata)
        reason = _not_ours(entry, intent, confirmed)
        if reason is not None or entry is None or entry.id is None:
            return reason
        # Stripe's own answer, when we asked, is newer than the event.
        await payments.apply_charge_result(session, SYSTEM, entry.id, (confirmed or intent).charge)
        return None

    return settle


def _not_ours(
    entry: Transaction | None, intent: PaymentIntentState, confirmed: PaymentIntentState | None
) -> str | None:
    """Why the PaymentIntent does not pay for the entry; None when it does."""
    if entry is None:
        return (
            f"{intent.id}: no entry of ours has this PaymentIntent, and its metadata names none awaiting one"
        )
    expected = (entry.amount_minor, entry.currency)
    if (intent.amount_minor, intent.currency) != expected:
        return (
            f"{intent.id}: the event is for {intent.amount_minor} {intent.currency},"
            f" entry {entry.id} for {entry.amount_minor} {entry.currency}"
        )
    if entry.stripe_payment_intent_id == intent.id:
        return None  # the PaymentIntent Stripe gave us when we charged
    if confirmed is None:
        return f"{intent.id}: Stripe does not confirm this PaymentIntent (entry {entry.id} has none yet)"
    named = (confirmed.metadata.get(TRANSACTION_ID_KEY), confirmed.metadata.get(ACCOUNT_ID_KEY))
    if named != (str(entry.id), str(entry.account_id)):
        return f"{intent.id}: at Stripe it names entry/account {named}, not {entry.id}/{entry.account_id}"
    if (confirmed.amount_minor, confirmed.currency) != expected:
        return (
            f"{intent.id}: at Stripe it is for {confirmed.amount_minor} {confirmed.currency},"
            f" entry {entry.id} for {entry.amount_minor} {entry.currency}"
        )
    return None


async def _charge_refunded(session: AsyncSession, refund: ChargeRefunded) -> str | None:
    """A refund entry for the newly refunded part only, of a charge we stored as paid.

    `amount_refunded` is cumulative, and newer API versions no longer embed the refunds list in the charge, so
    each step is keyed by (charge, cumulative amount): a redelivery or an older event adds nothing.
    """
    original = (
        await payments.entry_paid_by(session, SYSTEM, refund.payment_intent_id)
        if refund.payment_intent_id
        else None
    )
    if original is None or original.status != TransactionStatus.SUCCEEDED:
        return f"{refund.charge_id}: not a charge of ours that succeeded"
    if (refund.amount_minor, refund.currency) != (original.amount_minor, original.currency):
        return (
            f"{refund.charge_id}: the charge is for {refund.amount_minor} {refund.currency},"
            f" entry {original.id} for {original.amount_minor} {original.currency}"
        )
    assert original.id is not None
    await ledger.lock_account(
        session, SYSTEM, original.account_id
    )  # the sum below must not race another refund
    refunded_so_far = -await LedgerRepository(session, SYSTEM).reversed_sum(
        original.id, TransactionKind.REFUND
    )
    total = refund.amount_refunded_minor  # at most the charge's amount (webhook_events checks)
    if total > refunded_so_far:
        await ledger.reverse(
            session,
            SYSTEM,
            original,
            kind=TransactionKind.REFUND,
            amount_minor=-(total - refunded_so_far),
            description=f"Refund of {original.description}",
            idempotency_key=f"refund:{refund.charge_id}:{total}",
        )
    return None
