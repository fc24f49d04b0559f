"""A recharge follows its ledger entry, whoever settles the entry: the worker, a Stripe webhook or reconciliation.

Every settlement path calls `follow_settlement` in the transaction that settles the entry, so the recharge row
(which the monthly limit and `rechargedThisMonth` count) and the account's auto-recharge state agree with the
money: a recharge whose charge succeeded is `succeeded` however the success arrived, and never `canceled` or
`failed` afterwards.

Lower than both `payments` (which settles entries) and `recharge_engine` (which runs the worker), so both can
use it without an import cycle.
"""

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from billing.auto_recharge.repository import AutoRechargeRepository
from billing.events import service as events
from billing.events.service import AutoRechargeHalted
from billing.observability import metrics
from billing.scope import Scope
from billing.topups.repository import IN_FLIGHT as IN_FLIGHT  # the worker and its lag gauge read it here
from billing.topups.repository import TopUpRepository
from models import (
    AutoRechargeSettings,
    AutoRechargeState,
    Recharge,
    RechargeStatus,
    Transaction,
    TransactionKind,
    TransactionStatus,
)

MAX_CONSECUTIVE_FAILURES = 3
# A recharge in these states has not yet been told how its charge ended, so a failed entry fails it too.
# A `succeeded` one is left alone: it was either paid, or counted in advance for a bank still processing
# (which errs on the side of charging less).
_UNDECIDED = (*IN_FLIGHT, RechargeStatus.ACTION_REQUIRED)


async def follow_settlement(
    session: AsyncSession, scope: Scope, entry: Transaction, *, paid: bool, now: datetime
) -> None:
    """The recharge of this settled auto-recharge entry, and the account's auto-recharge state, follow it.

    `paid`: Stripe took the money for this entry, whether the entry succeeded or a late success was credited
    beside the failed entry. Repeating a call changes nothing.
    """
    if entry.kind != TransactionKind.AUTO_RECHARGE or entry.status == TransactionStatus.PENDING:
        return
    assert entry.id is not None
    top_ups = TopUpRepository(session, scope)
    recharge = await top_ups.recharge_of(entry.id)
    if recharge is None:
        return
    settings = await AutoRechargeRepository(session, scope).settings(entry.account_id)
    was = recharge.status
    if paid and was != RechargeStatus.SUCCEEDED:
        message = {
            RechargeStatus.ACTION_REQUIRED: "Confirmed by the customer; the card was charged.",
            RechargeStatus.FAILED: "The card was charged after the attempt was recorded as failed.",
            RechargeStatus.CANCELED: "The card was charged after the attempt was recorded as canceled.",
        }.get(RechargeStatus(was), "The card was charged.")
        finish_as(recharge, RechargeStatus.SUCCEEDED, message, now)
        if settings is not None:
            settings.consecutive_failures = 0
    elif not paid and was in _UNDECIDED:
        message = entry.failure_message or "The payment did not go through."
        finish_as(recharge, RechargeStatus.FAILED, message, now)
        if settings is not None:
            was_suspended = settings.suspended_reason is not None
            count_failure(settings, message, entry.failure_code)
            if settings.suspended_reason is not None and not was_suspended:
                halted = AutoRechargeHalted(
                    entry.account_id, AutoRechargeState.SUSPENDED, settings.suspended_reason
                )
                events.record(session, halted)
    else:
        return
    if settings is not None:
        if was == RechargeStatus.ACTION_REQUIRED:
            settings.action_required_client_secret = None  # the customer's confirmation is over, either way
        settings.updated_at = now


def count_failure(settings: AutoRechargeSettings, message: str, decline_code: str | None) -> None:
    settings.consecutive_failures += 1
    if decline_code == "authentication_required":
        # The bank wants 3-D Secure but gave nothing to authenticate with: retrying cannot help.
        settings.suspended_reason = f"Your bank asks you to authenticate this card: {message}"
    elif settings.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
        settings.suspended_reason = f"{settings.consecutive_failures} failed attempts in a row: {message}"


def finish_as(recharge: Recharge, status: RechargeStatus, message: str, now: datetime) -> None:
    recharge.status = status
    recharge.outcome_message = message[:500]
    recharge.finished_at = now
    recharge.locked_until = None
    metrics.recharge_outcome(status)
