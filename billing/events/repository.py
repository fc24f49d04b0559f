"""Committed domain events by cursor, within a scope: what live subscriptions read (billing/events/live.py)."""

from collections.abc import Collection

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.events.service import StoredEvent, from_json
from billing.scope import Scope
from billing.sql import among
from models import DomainEventRow


class DomainEventRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    async def since(
        self, after_id: int, accounts: Collection[int] | None, *, limit: int
    ) -> list[StoredEvent]:
        """Events with ids above `after_id`, oldest first, at most `limit`: of `accounts`, or (None) of every
        account in scope. The scope is the one of this statement's snapshot, so an account a partner gained is
        read from its first event after the grant, and one it lost is no longer read."""
        statement = select(
            DomainEventRow.id, DomainEventRow.type, DomainEventRow.payload, DomainEventRow.occurred_at
        ).where(col(DomainEventRow.id) > after_id, self.scope.accounts(col(DomainEventRow.account_id)))
        if accounts is not None:
            statement = statement.where(among(self.session, col(DomainEventRow.account_id), accounts))
        rows = (await self.session.exec(statement.order_by(col(DomainEventRow.id)).limit(limit))).all()
        return [
            StoredEvent(id=event_id, occurred_at=occurred_at, event=from_json(event_type, dict(payload)))
            for event_id, event_type, payload, occurred_at in rows
            if event_id is not None
        ]

    async def latest_id(self) -> int:
        """The latest committed event's id (0 when there is none), in any scope: a cursor that reads only what
        commits from now on."""
        latest = (await self.session.exec(select(func.max(col(DomainEventRow.id))))).one()
        return latest or 0
