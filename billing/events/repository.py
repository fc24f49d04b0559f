"""Domain events' statements, within a scope: committed events by cursor (what live subscriptions read,
billing/events/live.py), and the commit hook's own (billing/events/service.py), run on the committing sync session."""

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import BigInteger, Row, Table, func, insert, literal
from sqlalchemy.orm import Session
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.auto_recharge.repository import settings_statement
from billing.events.service import StoredEvent, from_json
from billing.scope import Scope
from billing.sql import among
from models import AutoRechargeSettings, DomainEventRow

_TABLE: Table = DomainEventRow.__table__  # type: ignore[attr-defined]


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


class CommitRepository:
    """What the commit hook reads and writes in the committing transaction (a sync session: SQLAlchemy's
    before_commit hook runs there). Built with the system scope: a commit writes the events of whatever accounts
    its transaction changed, which the services that changed them already checked."""

    def __init__(self, session: Session, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    def auto_recharge_settings(self, account_ids: Iterable[int]) -> dict[int, AutoRechargeSettings]:
        """The auto-recharge repository's `settings_of`, on this sync session."""
        statement = settings_statement(self.session, self.scope, account_ids)
        return {s.account_id: s for s in self.session.scalars(statement)}

    def lock_commit_order_and_notify(self, lock_key: int, channel: str, payload: str) -> None:
        """PostgreSQL only: the transaction-level advisory lock that keeps event ids in commit order, and the
        NOTIFY delivered at COMMIT (and not at all on rollback)."""
        lock = func.pg_advisory_xact_lock(literal(lock_key, BigInteger))
        self.session.connection().execute(select(lock, func.pg_notify(channel, payload)))

    def insert(self, rows: Sequence[Mapping[str, Any]]) -> Sequence[Row[Any]]:
        """The events' rows written; (id, type, payload, occurred_at) back, in no guaranteed order."""
        statement = insert(_TABLE).returning(
            _TABLE.c.id, _TABLE.c.type, _TABLE.c.payload, _TABLE.c.occurred_at
        )
        return self.session.connection().execute(statement, rows).all()
