"""Reconciliation: payments our ledger is unsure about are settled from what Stripe actually did, once each.

This heals a crash between "Stripe charged" and "ledger credited" (and a Stripe outage mid-request): the
PaymentIntent is read back by the id we stored or, when the crash came before we stored it, found through the
entry id in its metadata. Settling goes through `payments.apply_charge_result`, so a webhook, the worker or
another reconciliation run that got there first makes this a no-op: every worker runs it periodically
(`recharge_engine.run_worker`), and several at once only repeat each other's reads.

It also finds late successes: an entry reconciliation failed because Stripe had no charge for it, whose charge
then landed after all (a request still talking to Stripe, a 3-D Secure finished late), is credited once.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from billing.db import SessionFactory, unit_of_work
from billing.scope import Scope
from billing.stripe_gateway import ChargeResult, PaymentIntentState, PaymentProviderRejected, StripeGateway
from billing.topups import service as payments
from billing.topups.repository import TopUpRepository
from models import Transaction, TransactionStatus
from models.types import utcnow

logger = logging.getLogger(__name__)

# PaymentIntent statuses in which nothing happens until the customer acts.
WAITING_FOR_CUSTOMER = frozenset({"requires_action", "requires_payment_method", "requires_confirmation"})
# Nothing in Stripe for the entry: the charge never happened (Stripe was unreachable, or we crashed first).
NOT_CHARGED_CODE = "not_charged"
NOT_CHARGED = ChargeResult(
    "declined", None, None, NOT_CHARGED_CODE, "The payment did not reach the card network."
)
# A background pass over every account's payments.
SYSTEM = Scope.system("reconciliation")


@dataclass
class ReconcileReport:
    succeeded: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    still_pending: list[int] = field(default_factory=list)  # waiting for the customer (3-D Secure) or Stripe
    paid_late: list[int] = field(default_factory=list)  # failed as not charged, then charged after all


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
    late_success_within: timedelta = timedelta(hours=24),
    in_flight_for: timedelta = timedelta(0),
    now: datetime | None = None,
) -> ReconcileReport:
    """Settle every top-up and auto-recharge pending for longer than `pending_for`. One still waiting for the
    customer's 3-D Secure after `abandon_after` is canceled at Stripe, so it can never be charged unseen later.
    Then credit, once, each entry failed as not charged within `late_success_within` whose charge landed since.
    Stripe being down raises PaymentProviderUnavailable after the entries before it were settled; a later
    run carries on. An entry Stripe has no charge for is failed as not charged only once it is older than
    `in_flight_for` (the longest a request can still be talking to Stripe about it): before that, its charge
    may yet be created."""
    report = ReconcileReport()
    now = now or utcnow()
    async with unit_of_work(factory) as session:
        stale = await TopUpRepository(session, SYSTEM).stale_pending(now - pending_for)
    for entry, customer_id in stale:
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
        if intent is None and entry.created_at > now - in_flight_for:
            report.still_pending.append(entry.id)
            continue
        result = NOT_CHARGED if intent is None else intent.charge
        async with unit_of_work(factory) as session:
            settled = await payments.apply_charge_result(session, SYSTEM, entry.id, result, now=now)
        outcome = {
            TransactionStatus.SUCCEEDED: report.succeeded,
            TransactionStatus.PENDING: report.still_pending,
        }.get(TransactionStatus(settled.status), report.failed)
        outcome.append(entry.id)
        logger.info("reconciled payment %s: %s", entry.id, settled.status)
    await _credit_late_successes(factory, gateway, report, since=now - late_success_within, now=now)
    return report


async def _credit_late_successes(
    factory: SessionFactory,
    gateway: StripeGateway,
    report: ReconcileReport,
    *,
    since: datetime,
    now: datetime,
) -> None:
    """Entries failed because Stripe had no charge for them (so no PaymentIntent is linked, and no webhook
    would name them by id) are looked up again; a charge that succeeded since is credited once. Entries that
    failed on a PaymentIntent of their own hear of its later success from its webhook."""
    async with unit_of_work(factory) as session:
        failed_unseen = await TopUpRepository(session, SYSTEM).failed_without_intent(NOT_CHARGED_CODE, since)
    for entry, customer_id in failed_unseen:
        assert entry.id is not None
        intent = await _intent_for(gateway, entry, customer_id)
        if intent is None or intent.charge.status != "succeeded":
            continue
        async with unit_of_work(factory) as session:
            await payments.apply_charge_result(session, SYSTEM, entry.id, intent.charge, now=now)
        report.paid_late.append(entry.id)
        logger.warning("payment %s was charged after it was failed as not charged: credited", entry.id)
