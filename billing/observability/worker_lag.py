"""Worker lag, measured from the database when `/metrics` is scraped (not reported by the worker itself, which
would stop reporting exactly when it falls behind or dies)."""

from datetime import datetime

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.recharge_settlement import IN_FLIGHT
from models import Recharge


async def oldest_due_recharge_age(session: AsyncSession, *, now: datetime) -> float:
    """Seconds since the oldest unfinished recharge became due (0 when none is); uses `ix_recharge_due`."""
    statement = select(func.min(col(Recharge.run_after))).where(
        col(Recharge.status).in_(IN_FLIGHT), col(Recharge.run_after) <= now
    )
    oldest = (await session.exec(statement)).one()
    return max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
