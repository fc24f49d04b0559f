"""Stripe's event ids, recorded once each. Events are Stripe's, not an account's: no account filter applies,
and only the Stripe webhook path (system scope) records them."""

from sqlmodel.ext.asyncio.session import AsyncSession

from billing.scope import Scope
from models import StripeEvent


class StripeEventRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    async def seen(self, event_id: str) -> StripeEvent | None:
        return await self.session.get(StripeEvent, event_id)

    async def record(self, event_id: str, event_type: str) -> StripeEvent:
        """A new event row, flushed: a concurrent delivery of the same event fails here (primary key)."""
        record = StripeEvent(id=event_id, type=event_type)
        self.session.add(record)
        await self.session.flush()
        return record
