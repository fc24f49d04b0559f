"""The auto-recharge engine: a recharge is scheduled when a debit leaves the balance low; a worker charges it.

Guarantees, and what gives each:
- At most one recharge in flight per account: the partial unique index `uq_recharge_in_flight`; scheduling is
  an INSERT ... ON CONFLICT DO NOTHING in the debit's own transaction, so concurrent debits schedule one.
- Several workers never take the same recharge: claiming is `SELECT ... FOR UPDATE SKIP LOCKED` plus a short
  lease (`locked_until`) that the holder renews while it works (a heartbeat), so a worker that dies mid-charge
  holds its recharges for at most one lease (30 s by default), not for as long as a Stripe call could take.
  Each claim counts an attempt, and every write checks it still holds that attempt (a fencing token), so a
  worker that lost its lease can no longer move the recharge.
- A charge is sent at most once per recharge, by our own state rather than Stripe's idempotency memory: the
  pending ledger entry (key `recharge:{id}`) is committed before the first charge, so an attempt that finds it
  knows an earlier one may have reached Stripe. It settles from that entry when a webhook or reconciliation
  already did, else asks Stripe for a PaymentIntent made for the entry and settles from that; only when Stripe
  has none does it charge (with the same idempotency key `recharge:{id}`, Stripe's replay as a second line).
- The money decides: the worker settles through `payments.apply_charge_result` like webhooks and reconciliation,
  and the recharge follows its entry there (billing.auto_recharge.settlement), so a recharge paid by any path counts
  towards the monthly limit and is never canceled or failed afterwards.
- No retry storm: a declined recharge is finished; the next is scheduled no earlier than an hour after it, and
  auto-recharge is suspended after 3 declines in a row. `authentication_required` stops retrying until the
  customer acts (saving the settings again clears it).
- The monthly limit: this month's succeeded recharges (account's time zone) plus the one about to run stay
  within it.
- Nothing waits for cron: the worker loop also runs reconciliation periodically.

Lock order everywhere: the account row first, then its recharge, as the debits do.
"""

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from billing.auto_recharge import reconciliation
from billing.auto_recharge.repository import AutoRechargeRepository
from billing.auto_recharge.settlement import IN_FLIGHT as IN_FLIGHT
from billing.auto_recharge.settlement import finish_as, follow_settlement
from billing.config import Settings
from billing.db import SessionFactory, unit_of_work
from billing.events import service as events
from billing.events.service import AutoRechargeHalted
from billing.ledger import service as ledger
from billing.months import month_of
from billing.observability import metrics
from billing.payment_methods.repository import PaymentMethodRepository
from billing.scope import Scope
from billing.stripe_gateway import (
    ACCOUNT_ID_KEY,
    TRANSACTION_ID_KEY,
    ChargeResult,
    PaymentIntentState,
    PaymentProviderUnavailable,
    StripeGateway,
    longest_call,
)
from billing.topups import service as payments
from models import (
    Account,
    AutoRechargeSettings,
    AutoRechargeState,
    Recharge,
    RechargeStatus,
    TransactionKind,
    TransactionStatus,
)
from models.types import utcnow

logger = logging.getLogger(__name__)

RETRY_BACKOFF = timedelta(hours=1)
DEFAULT_LEASE = timedelta(seconds=Settings.model_fields["recharge_lease_seconds"].default)
DEFAULT_HEARTBEAT = timedelta(seconds=Settings.model_fields["recharge_heartbeat_seconds"].default)
UNAVAILABLE_RETRY = timedelta(minutes=1)
RECHARGE_ID_KEY = "recharge_id"
SYSTEM = Scope.system("the recharge worker acts for every account")


class ChargeGateway(Protocol):
    """What the engine needs of billing.stripe_gateway.StripeGateway (tests pass a double)."""

    async def charge(
        self,
        *,
        customer_id: str,
        payment_method: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        off_session: bool,
        description: str,
        metadata: dict[str, str],
    ) -> ChargeResult: ...

    async def find_payment_intent(
        self, *, customer_id: str, transaction_id: int, created_after: datetime
    ) -> PaymentIntentState | None: ...


# --- scheduling, inside the debit's transaction -------------------------------------------------------------


async def schedule_if_low(
    session: AsyncSession, scope: Scope, accounts: Sequence[Account], *, now: datetime
) -> None:
    """Schedule one recharge for each of these (locked, just debited) accounts that is below its threshold.

    One statement when nobody is low; a conflict with an in-flight recharge is skipped, not raised.
    """
    repository = AutoRechargeRepository(session, scope)
    by_id = {account.id: account for account in accounts if account.id is not None}
    armed = await repository.armed(list(by_id))
    low = [s for s in armed if by_id[s.account_id].balance_minor < s.threshold_minor]
    if not low:
        return
    history = await recent_recharges(repository, [s.account_id for s in low], now=now, scheduling=True)
    rows = []
    for settings in low:
        account = by_id[settings.account_id]
        past = history[settings.account_id]
        if (
            recharged_in_month(past, account.time_zone, now) + settings.amount_minor
            > settings.monthly_limit_minor
        ):
            continue
        failures = [r.finished_at for r in past if r.status == RechargeStatus.FAILED and r.finished_at]
        run_after = max(now, max(failures) + RETRY_BACKOFF) if failures else now
        rows.append(
            {
                "account_id": settings.account_id,
                "status": RechargeStatus.SCHEDULED,
                "amount_minor": settings.amount_minor,
                "currency": account.currency,
                "payment_method_id": settings.payment_method_id,
                "attempts": 0,
                "run_after": run_after,
                "created_at": now,
            }
        )
    if rows:
        await repository.schedule(rows)


async def recent_recharges(
    recharges: AutoRechargeRepository, account_ids: Sequence[int], *, now: datetime, scheduling: bool = False
) -> dict[int, list[Recharge]]:
    """Finished recharges recent enough to hold this month's in every time zone (for limits and back-off);
    `scheduling`: read to schedule one (see `AutoRechargeRepository.finished_since`)."""
    grouped: dict[int, list[Recharge]] = defaultdict(list)
    since = now - timedelta(days=32)
    for recharge in await recharges.finished_since(account_ids, since, scheduling=scheduling):
        grouped[recharge.account_id].append(recharge)
    return grouped


def recharged_in_month(recharges: Sequence[Recharge], time_zone: str, now: datetime) -> int:
    """The amount auto-recharged in `now`'s calendar month, in the account's time zone."""
    month = month_of(now, time_zone)
    return sum(
        r.amount_minor
        for r in recharges
        if r.status == RechargeStatus.SUCCEEDED
        and r.finished_at
        and month_of(r.finished_at, time_zone) == month
    )


# --- the worker ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claimed:
    recharge_id: int
    account_id: int
    attempt: int  # the recharge's `attempts` when this worker claimed it: the fencing token of every write


@dataclass(frozen=True)
class _Attempt:
    customer_id: str
    payment_method: str | None  # None: the card is gone, so this attempt may only settle, never charge
    amount_minor: int
    currency: str
    transaction_id: int
    # When the entry was written by an earlier attempt, which may have reached Stripe: look there first.
    earlier_since: datetime | None


async def run_once(
    factory: SessionFactory,
    gateway: ChargeGateway,
    *,
    now: datetime | None = None,
    lease: timedelta = DEFAULT_LEASE,
    heartbeat: timedelta = DEFAULT_HEARTBEAT,
    batch_size: int = 10,
) -> int:
    """Claim the due recharges and run each, keeping their leases alive meanwhile; returns how many."""
    now = now or utcnow()
    async with unit_of_work(factory) as session:
        claimed = await _claim(session, now=now, lease=lease, limit=batch_size)
    held = set(claimed)
    async with _leases_kept(factory, held, now=now, lease=lease, every=heartbeat):
        for item in claimed:
            await _run(factory, gateway, item, now=now)
            held.discard(item)
    return len(claimed)


async def run_worker(
    factory: SessionFactory, gateway: StripeGateway, *, stop_event: asyncio.Event, settings: Settings
) -> None:
    """Run passes until `stop_event` is set; sleeps between passes only when there was nothing to do.

    Every `reconcile_interval_seconds` (and once at start, to heal what a crash left) it also reconciles
    payments pending too long, so no cron is needed; several workers doing so only repeat each other's reads.
    Outgoing webhooks are sent by a loop of their own beside this one (billing/worker.py).
    """
    loop = asyncio.get_running_loop()
    lease = timedelta(seconds=settings.recharge_lease_seconds)
    heartbeat = timedelta(seconds=settings.recharge_heartbeat_seconds)
    next_reconcile = loop.time()
    while not stop_event.is_set():
        if loop.time() >= next_reconcile:
            next_reconcile = loop.time() + settings.reconcile_interval_seconds
            try:
                report = await reconciliation.reconcile(
                    factory,
                    gateway,
                    pending_for=timedelta(seconds=settings.reconcile_pending_seconds),
                    in_flight_for=longest_call(settings),
                )
            except PaymentProviderUnavailable:
                metrics.RECONCILIATION_RUNS.labels("stripe_unavailable").inc()
                logger.warning("reconciliation stopped: Stripe is unavailable; the next interval carries on")
            except Exception:
                # The database being down must not end the worker either.
                metrics.RECONCILIATION_RUNS.labels("failed").inc()
                logger.exception("reconciliation pass failed")
            else:
                metrics.reconciliation_completed({k: len(v) for k, v in vars(report).items()})
        try:
            claimed = await run_once(factory, gateway, lease=lease, heartbeat=heartbeat)
        except Exception:
            # A database hiccup must not end the embedded worker; the lease makes the retry safe.
            logger.exception("auto-recharge worker pass failed")
            claimed = 0
        if claimed == 0:
            idle = min(settings.worker_poll_seconds, max(0.0, next_reconcile - loop.time()))
            with suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), idle)


async def _claim(session: AsyncSession, *, now: datetime, lease: timedelta, limit: int) -> list[_Claimed]:
    """Due recharges nobody holds (or whose holder's lease ran out), leased to this worker."""
    claimed = []
    for recharge in await AutoRechargeRepository(session, SYSTEM).claim_due(now, limit):
        assert recharge.id is not None
        recharge.status = RechargeStatus.PROCESSING
        recharge.locked_until = now + lease
        recharge.attempts += 1
        claimed.append(_Claimed(recharge.id, recharge.account_id, recharge.attempts))
    return claimed


@asynccontextmanager
async def _leases_kept(
    factory: SessionFactory, held: set[_Claimed], *, now: datetime, lease: timedelta, every: timedelta
) -> AsyncIterator[None]:
    """Renew the leases of the recharges this pass still holds every `every` until the block ends.

    The new expiry is the pass's `now` plus the time elapsed since, so an injected clock stays coherent.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def beat() -> None:
        while held:
            await asyncio.sleep(every.total_seconds())
            until = now + timedelta(seconds=loop.time() - started) + lease
            try:
                await _renew(factory, held, until=until)
            except Exception:
                # The lease still has `lease - every` to run; the next beat tries again.
                logger.exception("renewing recharge leases failed")

    heart = asyncio.create_task(beat())
    try:
        yield
    finally:
        heart.cancel()
        with suppress(asyncio.CancelledError):
            await heart


async def _renew(factory: SessionFactory, held: set[_Claimed], *, until: datetime) -> None:
    items = list(held)
    if not items:
        return
    async with unit_of_work(factory) as session:
        renewed = await AutoRechargeRepository(session, SYSTEM).renew(
            [(item.recharge_id, item.attempt) for item in items], until
        )
    for item in items:
        if item.recharge_id not in renewed:
            # Finished, postponed, or taken over after our lease ran out: stop renewing it.
            held.discard(item)


async def _run(factory: SessionFactory, gateway: ChargeGateway, item: _Claimed, *, now: datetime) -> None:
    async with unit_of_work(factory) as session:
        attempt = await _prepare(session, item, now=now)
    if attempt is None:
        return
    try:
        result = await _outcome_at_stripe(gateway, item, attempt)
    except PaymentProviderUnavailable as error:
        async with unit_of_work(factory) as session:
            await _postpone(session, item, error.message, now=now)
        metrics.recharge_outcome("postponed")
        return
    async with unit_of_work(factory) as session:
        if result is None:
            await _call_off(session, item, now=now)
        else:
            await _finish(session, item, result, now=now)


async def _outcome_at_stripe(
    gateway: ChargeGateway, item: _Claimed, attempt: _Attempt
) -> ChargeResult | None:
    """What Stripe did for this recharge: what it already has for the entry, else the charge made now.

    None when Stripe has nothing and there is no card left to charge.
    """
    if attempt.earlier_since is not None:
        found = await gateway.find_payment_intent(
            customer_id=attempt.customer_id,
            transaction_id=attempt.transaction_id,
            created_after=attempt.earlier_since,
        )
        if found is not None:
            logger.info("recharge %s: settled from %s, not charged again", item.recharge_id, found.id)
            return found.charge
    if attempt.payment_method is None:
        return None
    return await gateway.charge(
        customer_id=attempt.customer_id,
        payment_method=attempt.payment_method,
        amount_minor=attempt.amount_minor,
        currency=attempt.currency,
        idempotency_key=f"recharge:{item.recharge_id}",
        off_session=True,
        description="Auto-recharge",
        metadata={
            RECHARGE_ID_KEY: str(item.recharge_id),
            TRANSACTION_ID_KEY: str(attempt.transaction_id),
            ACCOUNT_ID_KEY: str(item.account_id),
        },
    )


async def _locked(session: AsyncSession, item: _Claimed) -> tuple[Account, Recharge, bool]:
    """The account and recharge, locked in that order, and whether this worker still holds the recharge."""
    account = await ledger.lock_account(session, SYSTEM, item.account_id)
    recharge = await AutoRechargeRepository(session, SYSTEM).locked(item.recharge_id)
    held = recharge.status == RechargeStatus.PROCESSING and recharge.attempts == item.attempt
    return account, recharge, held


async def _prepare(session: AsyncSession, item: _Claimed, *, now: datetime) -> _Attempt | None:
    """Check the recharge may run and, on its first attempt, write its pending ledger entry.

    None when there is nothing to send to Stripe: the recharge was called off, taken over, or its entry was
    settled meanwhile (by a webhook or reconciliation), which the recharge then follows.
    """
    account, recharge, held = await _locked(session, item)
    if not held:
        return None
    earlier_since = None
    if recharge.transaction_id is None:
        # First attempt: nothing was charged yet, so it may still be called off.
        settings = await AutoRechargeRepository(session, SYSTEM).settings(item.account_id)
        reason = await _reason_not_to_charge(session, account, settings, now=now)
        if reason is not None or settings is None:
            finish_as(recharge, RechargeStatus.CANCELED, reason or "auto-recharge is not set up", now)
            return None
        recharge.payment_method_id = settings.payment_method_id
        posting = await ledger.post(
            session,
            SYSTEM,
            account_id=item.account_id,
            kind=TransactionKind.AUTO_RECHARGE,
            amount_minor=recharge.amount_minor,
            description="Auto-recharge",
            idempotency_key=f"recharge:{item.recharge_id}",
            status=TransactionStatus.PENDING,
            payment_method_id=settings.payment_method_id,
        )
        recharge.transaction_id = posting.transaction.id
    else:
        entry = await AutoRechargeRepository(session, SYSTEM).entry(recharge.transaction_id)
        assert entry is not None
        if entry.status != TransactionStatus.PENDING:
            await follow_settlement(
                session, SYSTEM, entry, paid=entry.status == TransactionStatus.SUCCEEDED, now=now
            )
            return None
        earlier_since = entry.created_at
    assert recharge.transaction_id is not None
    if account.stripe_customer_id is None:
        # No customer means nothing was ever charged for this account: there is nothing to find either.
        finish_as(recharge, RechargeStatus.CANCELED, "the account has no Stripe customer", now)
        return None
    cards = PaymentMethodRepository(session, SYSTEM)
    method = await cards.get(recharge.payment_method_id) if recharge.payment_method_id else None
    return _Attempt(
        customer_id=account.stripe_customer_id,
        payment_method=method.stripe_payment_method_id if method is not None else None,
        amount_minor=recharge.amount_minor,
        currency=recharge.currency,
        transaction_id=recharge.transaction_id,
        earlier_since=earlier_since,
    )


async def _reason_not_to_charge(
    session: AsyncSession, account: Account, settings: AutoRechargeSettings | None, *, now: datetime
) -> str | None:
    if settings is None or not settings.enabled:
        return "auto-recharge was turned off"
    if settings.suspended_reason is not None or settings.action_required_client_secret is not None:
        return "auto-recharge is waiting for the customer"
    cards = PaymentMethodRepository(session, SYSTEM)
    method = await cards.get(settings.payment_method_id) if settings.payment_method_id else None
    if method is None or method.account_id != account.id or account.stripe_customer_id is None:
        return "no card to charge"
    if account.balance_minor >= settings.threshold_minor:
        return "the balance is back above the threshold"
    assert account.id is not None
    recharges = AutoRechargeRepository(session, SYSTEM)
    past = (await recent_recharges(recharges, [account.id], now=now))[account.id]
    if (
        recharged_in_month(past, account.time_zone, now) + settings.amount_minor
        > settings.monthly_limit_minor
    ):
        return "the monthly limit is reached"
    return None


async def _postpone(session: AsyncSession, item: _Claimed, message: str, *, now: datetime) -> None:
    """Stripe was unreachable: not a decline. Run again shortly; that attempt asks Stripe first."""
    _, recharge, held = await _locked(session, item)
    if not held:
        return
    recharge.status = RechargeStatus.SCHEDULED
    recharge.locked_until = None
    recharge.run_after = now + UNAVAILABLE_RETRY
    recharge.outcome_message = message


async def _call_off(session: AsyncSession, item: _Claimed, *, now: datetime) -> None:
    """The card was removed after an earlier attempt, and Stripe has no charge for the entry: nothing was
    taken and nothing can be. Canceled first, so failing the entry does not count as a decline."""
    _, recharge, held = await _locked(session, item)
    if not held or recharge.transaction_id is None:
        return
    finish_as(recharge, RechargeStatus.CANCELED, "the card was removed while the recharge ran", now)
    await payments.apply_charge_result(
        session, SYSTEM, recharge.transaction_id, reconciliation.NOT_CHARGED, now=now
    )


async def _finish(session: AsyncSession, item: _Claimed, result: ChargeResult, *, now: datetime) -> None:
    account, recharge, held = await _locked(session, item)
    if recharge.transaction_id is None:
        return
    last_claim = recharge.attempts == item.attempt  # nobody took the recharge over from us
    # The entry is settled from Stripe's answer even by a worker that lost its lease: settling is idempotent,
    # a late success is credited rather than lost, and the recharge follows the entry.
    entry = await payments.apply_charge_result(session, SYSTEM, recharge.transaction_id, result, now=now)
    if not last_claim:
        return
    assert account.id is not None
    settings = await AutoRechargeRepository(session, SYSTEM).settings(account.id)
    if entry.status == TransactionStatus.PENDING and held:
        if result.status == "requires_action" and result.client_secret is not None:
            # Off-session 3-D Secure: stop until the customer authenticates; the pending entry awaits the
            # webhook (or reconciliation), and the recharge follows it.
            finish_as(
                recharge,
                RechargeStatus.ACTION_REQUIRED,
                result.message or "Your bank asks you to confirm.",
                now,
            )
            if settings is not None:
                settings.action_required_client_secret = result.client_secret
                reason = result.message or "Your bank asks you to confirm."
                events.record(
                    session, AutoRechargeHalted(item.account_id, AutoRechargeState.ACTION_REQUIRED, reason)
                )
        else:
            # The bank settles later; the pending entry is settled by the webhook or reconciliation. Counted as
            # succeeded for the monthly limit, which errs on the side of charging less.
            finish_as(recharge, RechargeStatus.SUCCEEDED, "The bank is processing the payment.", now)
    elif recharge.status == RechargeStatus.FAILED:
        # Failed just now by the settlement above, or by the decline's webhook that beat us to it: the next
        # recharge is scheduled after the back-off either way.
        await session.flush()
        await schedule_if_low(session, SYSTEM, [account], now=now)
    if settings is not None:
        settings.updated_at = now
