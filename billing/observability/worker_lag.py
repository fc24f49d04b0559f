"""Worker lag, measured from the database when `/metrics` is scraped (not reported by the worker itself, which
would stop reporting exactly when it falls behind or dies)."""

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from billing.auto_recharge.repository import AutoRechargeRepository
from billing.scope import Scope

# The gauge measures the worker's queue, which holds every account's recharges; it exposes one age, no rows.
WORKER_QUEUE = Scope.system("the worker lag gauge measures the queue of every account")


async def oldest_due_recharge_age(session: AsyncSession, *, now: datetime) -> float:
    """Seconds since the oldest unfinished recharge became due (0 when none is); uses `ix_recharge_due`."""
    oldest = await AutoRechargeRepository(session, WORKER_QUEUE).oldest_due(now)
    return max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
