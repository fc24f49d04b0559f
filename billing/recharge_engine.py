"""The auto-recharge engine: a recharge is scheduled when a debit leaves the balance low; a worker charges it.

Guarantees, and what gives each:
- At most one recharge in flight per account: the partial unique index `uq_recharge_in_flight`; scheduling is
  an INSERT ... ON CONFLICT DO NOTHING in the debit's own transaction, so concurrent debits schedule one.
- Several workers never take the same recharge: claiming is `SELECT ... FOR UPDATE SKIP LOCKED` plus a lease
  (`locked_until`); a crashed worker's recharge is claimed again once its lease runs out.
- Never charged twice: one recharge is one charge attempt, whose Stripe idempotency key is `recharge:{id}`
  and whose pending ledger entry (key `recharge:{id}`) is written before the charge; a charge retried after a
  crash replays at Stripe and the entry is settled once.
- No retry storm: a declined recharge is finished; the next is scheduled no earlier than an hour after it, and
  auto-recharge is suspended after 3 declines in a row. `authentication_required` stops retrying until the
  customer acts (saving the settings again clears it).
- The monthly limit: this month's succeeded recharges (account's time zone) plus the one about to run stay
  within it.

Lock order everywhere: the account row first, then its recharge, as the debits do.
"""

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import ledger
from billing.db import SessionFactory, unit_of_work
from billing.months import month_of
from billing.sql import upsert_insert
from billing.stripe_gateway import (
    ACCOUNT_ID_KEY,
    TRANSACTION_ID_KEY,
    ChargeResult,
    PaymentProviderUnavailable,
)
from models import (
    Account,
    AutoRechargeSettings,
    PaymentMethod,
    Recharge,
    RechargeStatus,
    Transaction,
    TransactionKind,
    TransactionStatus,
)
from models.types import utcnow

logger = logging.getLogger(__name__)

RETRY_BACKOFF = timedelta(hours=1)
MAX_CONSECUTIVE_FAILURES = 3
DEFAULT_LEASE = timedelta(minutes=5)  # far longer than a Stripe call with its timeouts and retries
UNAVAILABLE_RETRY = timedelta(minutes=1)
RECHARGE_ID_KEY = "recharge_id"
IN_FLIGHT = (RechargeStatus.SCHEDULED, RechargeStatus.PROCESSING)


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


# --- scheduling, inside the debit's transaction -------------------------------------------------------------


async def schedule_if_low(session: AsyncSession, accounts: Sequence[Account], *, now: datetime) -> None:
    """Schedule one recharge for each of these (locked, just debited) accounts that is below its threshold.

    One statement when nobody is low; a conflict with an in-flight recharge is skipped, not raised.
    """
    by_id = {account.id: account for account in accounts if account.id is not None}
    armed = await _armed_settings(session, list(by_id))
    low = [s for s in armed if by_id[s.account_id].balance_minor < s.threshold_minor]
    if not low:
        return
    history = await recent_recharges(session, [s.account_id for s in low], now=now)
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
        await (await session.connection()).execute(
            upsert_insert(session, Recharge).on_conflict_do_nothing(), rows
        )


async def _armed_settings(session: AsyncSession, account_ids: list[int]) -> Sequence[AutoRechargeSettings]:
    statement = select(AutoRechargeSettings).where(
        col(AutoRechargeSettings.account_id).in_(account_ids),
        col(AutoRechargeSettings.enabled),
        col(AutoRechargeSettings.suspended_reason).is_(None),
        col(AutoRechargeSettings.action_required_client_secret).is_(None),
        col(AutoRechargeSettings.payment_method_id).is_not(None),
    )
    return (await session.exec(statement)).all()


async def recent_recharges(
    session: AsyncSession, account_ids: Sequence[int], *, now: datetime
) -> dict[int, list[Recharge]]:
    """Finished recharges recent enough to hold this month's in every time zone (for limits and back-off)."""
    statement = select(Recharge).where(
        col(Recharge.account_id).in_(account_ids),
        col(Recharge.finished_at) >= now - timedelta(days=32),
    )
    grouped: dict[int, list[Recharge]] = defaultdict(list)
    for recharge in (await session.exec(statement)).all():
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


@dataclass(frozen=True)
class _Charge:
    customer_id: str
    payment_method: str
    amount_minor: int
    currency: str
    transaction_id: int


async def run_once(
    factory: SessionFactory,
    gateway: ChargeGateway,
    *,
    now: datetime | None = None,
    lease: timedelta = DEFAULT_LEASE,
    batch_size: int = 10,
) -> int:
    """Claim the due recharges and run each; returns how many were claimed."""
    now = now or utcnow()
    async with unit_of_work(factory) as session:
        claimed = await _claim(session, now=now, lease=lease, limit=batch_size)
    for item in claimed:
        await _run(factory, gateway, item, now=now)
    return len(claimed)


async def run_worker(
    factory: SessionFactory, gateway: ChargeGateway, *, stop_event: asyncio.Event, poll_interval: float = 5.0
) -> None:
    """Run passes until `stop_event` is set; sleeps between passes only when there was nothing to do."""
    while not stop_event.is_set():
        try:
            claimed = await run_once(factory, gateway)
        except Exception:
            # A database hiccup must not end the embedded worker; the lease makes the retry safe.
            logger.exception("auto-recharge worker pass failed")
            claimed = 0
        if claimed == 0:
            with suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), poll_interval)


async def _claim(session: AsyncSession, *, now: datetime, lease: timedelta, limit: int) -> list[_Claimed]:
    """Due recharges nobody holds (or whose holder's lease ran out), leased to this worker."""
    statement = (
        select(Recharge)
        .where(
            col(Recharge.status).in_(IN_FLIGHT),
            col(Recharge.run_after) <= now,
            or_(col(Recharge.locked_until).is_(None), col(Recharge.locked_until) <= now),
        )
        .order_by(col(Recharge.run_after), col(Recharge.id))
        .limit(limit)
        # PostgreSQL: concurrent workers skip each other's rows. SQLite has one writer and ignores this.
        .with_for_update(skip_locked=True)
    )
    claimed = []
    for recharge in (await session.exec(statement)).all():
        assert recharge.id is not None
        recharge.status = RechargeStatus.PROCESSING
        recharge.locked_until = now + lease
        recharge.attempts += 1
        claimed.append(_Claimed(recharge.id, recharge.account_id))
    return claimed


async def _run(factory: SessionFactory, gateway: ChargeGateway, item: _Claimed, *, now: datetime) -> None:
    async with unit_of_work(factory) as session:
        charge = await _prepare(session, item, now=now)
    if charge is None:
        return
    try:
        result = await gateway.charge(
            customer_id=charge.customer_id,
            payment_method=charge.payment_method,
            amount_minor=charge.amount_minor,
            currency=charge.currency,
            idempotency_key=f"recharge:{item.recharge_id}",
            off_session=True,
            description="Auto-recharge",
            metadata={
                RECHARGE_ID_KEY: str(item.recharge_id),
                TRANSACTION_ID_KEY: str(charge.transaction_id),
                ACCOUNT_ID_KEY: str(item.account_id),
            },
        )
    except PaymentProviderUnavailable as error:
        async with unit_of_work(factory) as session:
            await _postpone(session, item, error.message, now=now)
        return
    async with unit_of_work(factory) as session:
        await _finish(session, item, result, now=now)


async def _locked(session: AsyncSession, item: _Claimed) -> tuple[Account, Recharge]:
    account = await ledger.lock_account(session, item.account_id)
    statement = (
        select(Recharge)
        .where(Recharge.id == item.recharge_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return account, (await session.exec(statement)).one()


async def _prepare(session: AsyncSession, item: _Claimed, *, now: datetime) -> _Charge | None:
    """Check the recharge may run and write its pending ledger entry; None when it was canceled instead."""
    account, recharge = await _locked(session, item)
    if recharge.status != RechargeStatus.PROCESSING:
        return None
    if recharge.transaction_id is None:
        # First attempt: nothing was charged yet, so it may still be called off.
        settings = await session.get(AutoRechargeSettings, account.id)
        reason = await _reason_not_to_charge(session, account, settings, now=now)
        if reason is not None or settings is None:
            _finish_as(recharge, RechargeStatus.CANCELED, reason or "auto-recharge is not set up", now)
            return None
        recharge.payment_method_id = settings.payment_method_id
        posting = await ledger.post(
            session,
            account_id=item.account_id,
            kind=TransactionKind.AUTO_RECHARGE,
            amount_minor=recharge.amount_minor,
            description="Auto-recharge",
            idempotency_key=f"recharge:{item.recharge_id}",
            status=TransactionStatus.PENDING,
            payment_method_id=settings.payment_method_id,
        )
        recharge.transaction_id = posting.transaction.id
    method = (
        await session.get(PaymentMethod, recharge.payment_method_id) if recharge.payment_method_id else None
    )
    if method is None or account.stripe_customer_id is None or recharge.transaction_id is None:
        # Only after a crash mid-charge: reconciliation settles the pending entry from what Stripe says.
        _finish_as(recharge, RechargeStatus.CANCELED, "the card was removed while the recharge ran", now)
        return None
    return _Charge(
        customer_id=account.stripe_customer_id,
        payment_method=method.stripe_payment_method_id,
        amount_minor=recharge.amount_minor,
        currency=recharge.currency,
        transaction_id=recharge.transaction_id,
    )


async def _reason_not_to_charge(
    session: AsyncSession, account: Account, settings: AutoRechargeSettings | None, *, now: datetime
) -> str | None:
    if settings is None or not settings.enabled:
        return "auto-recharge was turned off"
    if settings.suspended_reason is not None or settings.action_required_client_secret is not None:
        return "auto-recharge is waiting for the customer"
    method = (
        await session.get(PaymentMethod, settings.payment_method_id) if settings.payment_method_id else None
    )
    if method is None or method.account_id != account.id or account.stripe_customer_id is None:
        return "no card to charge"
    if account.balance_minor >= settings.threshold_minor:
        return "the balance is back above the threshold"
    assert account.id is not None
    past = (await recent_recharges(session, [account.id], now=now))[account.id]
    if (
        recharged_in_month(past, account.time_zone, now) + settings.amount_minor
        > settings.monthly_limit_minor
    ):
        return "the monthly limit is reached"
    return None


async def _postpone(session: AsyncSession, item: _Claimed, message: str, *, now: datetime) -> None:
    """Stripe was unreachable: not a decline. Run again shortly with the same key and pending entry."""
    _, recharge = await _locked(session, item)
    if recharge.status != RechargeStatus.PROCESSING:
        return
    recharge.status = RechargeStatus.SCHEDULED
    recharge.locked_until = None
    recharge.run_after = now + UNAVAILABLE_RETRY
    recharge.outcome_message = message


async def _finish(session: AsyncSession, item: _Claimed, result: ChargeResult, *, now: datetime) -> None:
    account, recharge = await _locked(session, item)
    if recharge.status != RechargeStatus.PROCESSING or recharge.transaction_id is None:
        return  # another worker finished it after our lease ran out
    settings = await session.get(AutoRechargeSettings, account.id)
    if result.status == "succeeded":
        await ledger.settle(
            session,
            recharge.transaction_id,
            TransactionStatus.SUCCEEDED,
            stripe_payment_intent_id=result.payment_intent_id,
        )
        _finish_as(recharge, RechargeStatus.SUCCEEDED, "The card was charged.", now)
        if settings is not None:
            settings.consecutive_failures = 0
    elif result.status == "processing":
        # The bank settles later; the pending entry is settled by the webhook or reconciliation. Counted as
        # succeeded for the monthly limit, which errs on the side of charging less.
        _finish_as(recharge, RechargeStatus.SUCCEEDED, "The bank is processing the payment.", now)
    elif result.status == "requires_action" and result.client_secret is not None:
        # Off-session 3-D Secure: stop until the customer authenticates; the pending entry awaits the webhook.
        _finish_as(
            recharge, RechargeStatus.ACTION_REQUIRED, result.message or "Your bank asks you to confirm.", now
        )
        if settings is not None:
            settings.action_required_client_secret = result.client_secret
    else:
        message = result.message or "The card was declined."
        await ledger.settle(
            session,
            recharge.transaction_id,
            TransactionStatus.FAILED,
            failure_code=result.decline_code,
            failure_message=message,
            stripe_payment_intent_id=result.payment_intent_id,
        )
        _finish_as(recharge, RechargeStatus.FAILED, message, now)
        if settings is not None:
            _count_failure(settings, message, result.decline_code)
        await session.flush()
        await schedule_if_low(session, [account], now=now)
    if settings is not None:
        settings.updated_at = now


def _count_failure(settings: AutoRechargeSettings, message: str, decline_code: str | None) -> None:
    settings.consecutive_failures += 1
    if decline_code == "authentication_required":
        # The bank wants 3-D Secure but gave nothing to authenticate with: retrying cannot help.
        settings.suspended_reason = f"Your bank asks you to authenticate this card: {message}"
    elif settings.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
        settings.suspended_reason = f"{settings.consecutive_failures} failed attempts in a row: {message}"


async def follow_settlement(session: AsyncSession, entry: Transaction) -> None:
    """Stripe settled an auto-recharge after the engine's charge call returned (the customer finished
    3-D Secure, or the bank finished processing): the recharge and the account's auto-recharge state follow.
    Called by webhooks and reconciliation once the ledger entry is settled; repeating it changes nothing."""
    if entry.kind != TransactionKind.AUTO_RECHARGE or entry.status == TransactionStatus.PENDING:
        return
    statement = select(Recharge).where(Recharge.transaction_id == entry.id).with_for_update()
    recharge = (await session.exec(statement)).first()
    settings = await session.get(AutoRechargeSettings, entry.account_id)
    if recharge is None or settings is None or recharge.status != RechargeStatus.ACTION_REQUIRED:
        return
    now = utcnow()
    settings.action_required_client_secret = None
    settings.updated_at = now
    if entry.status == TransactionStatus.SUCCEEDED:
        _finish_as(
            recharge, RechargeStatus.SUCCEEDED, "Confirmed by the customer; the card was charged.", now
        )
        settings.consecutive_failures = 0
    else:
        message = entry.failure_message or "The confirmation did not go through."
        _finish_as(recharge, RechargeStatus.FAILED, message, now)
        _count_failure(settings, message, entry.failure_code)


def _finish_as(recharge: Recharge, status: RechargeStatus, message: str, now: datetime) -> None:
    recharge.status = status
    recharge.outcome_message = message[:500]
    recharge.finished_at = now
    recharge.locked_until = None
