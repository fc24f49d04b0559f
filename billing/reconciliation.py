"""Reconciliation: top-ups still pending after a while are settled from what Stripe actually did, once each.

This heals a crash between "Stripe charged" and "ledger credited" (and a Stripe outage mid-request): the
PaymentIntent is read back by the id we stored or, when the crash came before we stored it, found through the
entry id in its metadata. Settling goes through `payments.apply_charge_result`, so a webhook or another
reconciliation run that got there first makes this a no-op.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import col, select

from billing import payments
from billing.db import SessionFactory, unit_of_work
from billing.stripe_gateway import ChargeResult, PaymentIntentState, PaymentProviderRejected, StripeGateway
from models import Account, Transaction, TransactionKind, TransactionStatus
from models.types import utcnow

logger = logging.getLogger(__name__)

# Nothing in Stripe for the entry: the charge never happened (Stripe was unreachable, or we crashed first).
# PaymentIntent statuses in which nothing happens until the customer acts.
WAITING_FOR_CUSTOMER = frozenset({"requires_action", "requires_payment_method", "requires_confirmation"})
NOT_CHARGED = ChargeResult(
    "declined", None, None, "not_charged", "The payment did not reach the card network."
)


@dataclass
class ReconcileReport:
    succeeded: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    still_pending: list[int] = field(default_factory=list)  # waiting for the customer (3-D Secure) or Stripe


async def _stale_payments(
    factory: SessionFactory, older_than: datetime
) -> list[tuple[Transaction, str | None]]:
    async with unit_of_work(factory) as session:
        statement = (
            select(Transaction, Account.stripe_customer_id)
            .join(Account, col(Account.id) == col(Transaction.account_id))
            .where(
                # Auto-recharges too: a worker that died mid-charge, or a 3-D Secure nobody reported back.
                col(Transaction.kind).in_([TransactionKind.TOP_UP, TransactionKind.AUTO_RECHARGE]),
                Transaction.status == TransactionStatus.PENDING,
                col(Transaction.created_at) < older_than,
            )
            .order_by(col(Transaction.id))
        )
        return [(entry, customer) for entry, customer in (await session.exec(statement)).all()]


async def _intent_for(
    gateway: StripeGateway, entry: Transaction, customer_id: str | None
) -> PaymentIntentState | None:
    if entry.stripe_payment_intent_id is not None:
        return await gateway.retrieve_payment_intent(entry.stripe_payment_intent_id)
    if customer_id is None or entry.id is None:
        return None
    return await gateway.find_payment_intent(
        customer_id=customer_id, transaction_id=entry.id, created_after=entry.created_at
    )


async def reconcile(
    factory: SessionFactory,
    gateway: StripeGateway,
    *,
    pending_for: timedelta = timedelta(minutes=10),
    abandon_after: timedelta = timedelta(hours=24),
    now: datetime | None = None,
) -> ReconcileReport:
    """Settle every top-up and auto-recharge pending for longer than `pending_for`. One still waiting for the
    customer's 3-D Secure after `abandon_after` is canceled at Stripe, so it can never be charged unseen later.
    Stripe being down raises PaymentProviderUnavailable after the entries before it were settled; a later
    run carries on."""
    report = ReconcileReport()
    now = now or utcnow()
    for entry, customer_id in await _stale_payments(factory, now - pending_for):
        assert entry.id is not None
        intent = await _intent_for(gateway, entry, customer_id)
        if (
            intent is not None
            and intent.status in WAITING_FOR_CUSTOMER
            and entry.created_at < now - abandon_after
        ):
            try:
                intent = await gateway.cancel_payment_intent(intent.id)
            except PaymentProviderRejected:
                # Another reconciler (or the customer) got there first: settle from what Stripe says now.
                intent = await gateway.retrieve_payment_intent(intent.id)
        result = NOT_CHARGED if intent is None else intent.charge
        async with unit_of_work(factory) as session:
            settled = await payments.apply_charge_result(session, entry.id, result)
        outcome = {
            TransactionStatus.SUCCEEDED: report.succeeded,
            TransactionStatus.PENDING: report.still_pending,
        }.get(TransactionStatus(settled.status), report.failed)
        outcome.append(entry.id)
        logger.info("reconciled payment %s: %s", entry.id, settled.status)
    return report
