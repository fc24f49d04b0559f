"""The audit trail's reads: an account's settings events, newest first, within a scope."""

from collections.abc import Collection, Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.scope import Scope
from models import DomainEventRow


class AuditRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    async def page(
        self, account_id: int, types: Collection[str], *, before_id: int | None, limit: int
    ) -> Sequence[DomainEventRow]:
        """The account's events of these types with ids below `before_id` (None: from the newest), newest first."""
        statement = select(DomainEventRow).where(
            DomainEventRow.account_id == account_id,
            self.scope.accounts(col(DomainEventRow.account_id)),
            col(DomainEventRow.type).in_(sorted(types)),
        )
        if before_id is not None:
            statement = statement.where(col(DomainEventRow.id) < before_id)
        return (await self.session.exec(statement.order_by(col(DomainEventRow.id).desc()).limit(limit))).all()
