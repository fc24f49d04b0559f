"""Auto-recharge settings and recharges (the engine's queue) of the accounts of the scope.

The worker's claims and leases are here too: `claim_due` takes due recharges with `FOR UPDATE SKIP LOCKED`,
`renew` extends the leases a worker still holds (its claim's attempt is the fencing token), `locked` rereads
one under a row lock.
"""

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import and_, func, or_, update
from sqlalchemy.orm import Session
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from billing.scope import Scope
from billing.sql import among, upsert_insert
from billing.topups.repository import IN_FLIGHT
from models import Account, AutoRechargeSettings, Recharge, RechargeStatus, Transaction


def settings_statement(
    session: AsyncSession | Session, scope: Scope, account_ids: Iterable[int]
) -> SelectOfScalar[AutoRechargeSettings]:
    """The settings of the accounts among `account_ids` in `scope`: `settings_of`'s statement, and the commit
    hook's (billing/events/repository.py), which runs it on the committing transaction's sync session."""
    return select(AutoRechargeSettings).where(
        among(session, col(AutoRechargeSettings.account_id), account_ids),
        scope.accounts(col(AutoRechargeSettings.account_id)),
    )


class AutoRechargeRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    # --- settings ---------------------------------------------------------------------------------------

    async def settings(self, account_id: int) -> AutoRechargeSettings | None:
        if self.scope.principal is None:
            return await self.session.get(AutoRechargeSettings, account_id)  # the identity map may answer
        statement = select(AutoRechargeSettings).where(
            AutoRechargeSettings.account_id == account_id,
            self.scope.accounts(col(AutoRechargeSettings.account_id)),
        )
        return (await self.session.exec(statement)).first()

    async def settings_of(self, account_ids: Iterable[int]) -> dict[int, AutoRechargeSettings]:
        """The settings (what funding state measures against) of the accounts among `account_ids`."""
        statement = settings_statement(self.session, self.scope, account_ids)
        return {row.account_id: row for row in (await self.session.exec(statement)).all()}

    def add_settings(self, settings: AutoRechargeSettings) -> None:
        """New settings of an account the caller found (and locked) in this scope."""
        self.session.add(settings)

    async def flush(self) -> None:
        await self.session.flush()

    async def armed(self, account_ids: Iterable[int]) -> Sequence[AutoRechargeSettings]:
        """The settings among these accounts that may schedule a recharge: on, not waiting for the customer,
        with a card. Read to schedule one after a debit, so among the accounts the scope writes."""
        statement = select(AutoRechargeSettings).where(
            col(AutoRechargeSettings.account_id).in_(account_ids),
            col(AutoRechargeSettings.enabled),
            col(AutoRechargeSettings.suspended_reason).is_(None),
            col(AutoRechargeSettings.action_required_client_secret).is_(None),
            col(AutoRechargeSettings.payment_method_id).is_not(None),
            self.scope.writable(col(AutoRechargeSettings.account_id)),
        )
        return (await self.session.exec(statement)).all()

    async def with_accounts(self, account_ids: Iterable[int]) -> list[tuple[AutoRechargeSettings, Account]]:
        """The settings among these accounts, each with its account."""
        statement = (
            select(AutoRechargeSettings, Account)
            .join(Account, col(Account.id) == col(AutoRechargeSettings.account_id))
            .where(
                col(AutoRechargeSettings.account_id).in_(account_ids),
                self.scope.accounts(col(AutoRechargeSettings.account_id)),
            )
        )
        return [(settings, account) for settings, account in (await self.session.exec(statement)).all()]

    async def use_card_where_none(self, account_id: int, payment_method_id: int) -> None:
        """Make the card the one auto-recharge charges, unless the settings name one already."""
        await self.session.exec(
            update(AutoRechargeSettings)
            .where(
                col(AutoRechargeSettings.account_id) == account_id,
                col(AutoRechargeSettings.payment_method_id).is_(None),
                self.scope.accounts(col(AutoRechargeSettings.account_id)),
            )
            .values(payment_method_id=payment_method_id)
        )

    # --- recharges --------------------------------------------------------------------------------------

    async def in_flight(self, account_ids: Iterable[int]) -> set[int]:
        """The accounts among these with a recharge in flight."""
        statement = select(Recharge.account_id).where(
            col(Recharge.account_id).in_(account_ids),
            col(Recharge.status).in_(IN_FLIGHT),
            self.scope.accounts(col(Recharge.account_id)),
        )
        return set((await self.session.exec(statement)).all())

    async def last_finished(self, account_ids: Iterable[int]) -> dict[int, Recharge]:
        """Each account's latest finished recharge."""
        ids = list(account_ids)
        latest_ids = (
            select(func.max(Recharge.id))
            .where(
                col(Recharge.account_id).in_(ids),
                col(Recharge.finished_at).is_not(None),
                self.scope.accounts(col(Recharge.account_id)),
            )
            .group_by(col(Recharge.account_id))
        )
        statement = select(Recharge).where(col(Recharge.id).in_(latest_ids))
        return {recharge.account_id: recharge for recharge in (await self.session.exec(statement)).all()}

    async def finished_since(
        self, account_ids: Iterable[int], since: datetime, *, scheduling: bool = False
    ) -> Sequence[Recharge]:
        """The recharges of these accounts finished at or after `since`; among the accounts the scope writes
        when `scheduling` a recharge after a debit, else among those it reads."""
        allowed = self.scope.writable if scheduling else self.scope.accounts
        statement = select(Recharge).where(
            col(Recharge.account_id).in_(account_ids),
            col(Recharge.finished_at) >= since,
            allowed(col(Recharge.account_id)),
        )
        return (await self.session.exec(statement)).all()

    async def schedule(self, rows: Sequence[Mapping[str, object]]) -> None:
        """Insert these recharges; one for an account that has one in flight already is skipped, not raised.
        The rows' accounts were locked by the caller in this scope (an INSERT has no WHERE for a filter)."""
        await (await self.session.connection()).execute(
            upsert_insert(self.session, Recharge).on_conflict_do_nothing(), rows
        )

    async def claim_due(self, now: datetime, limit: int) -> Sequence[Recharge]:
        """Up to `limit` due recharges nobody holds (or whose holder's lease ran out), locked, oldest due first."""
        statement = (
            select(Recharge)
            .where(
                col(Recharge.status).in_(IN_FLIGHT),
                col(Recharge.run_after) <= now,
                or_(col(Recharge.locked_until).is_(None), col(Recharge.locked_until) <= now),
                self.scope.accounts(col(Recharge.account_id)),
            )
            .order_by(col(Recharge.run_after), col(Recharge.id))
            .limit(limit)
            # PostgreSQL: concurrent workers skip each other's rows. SQLite has one writer and ignores this.
            .with_for_update(skip_locked=True)
        )
        return (await self.session.exec(statement)).all()

    async def renew(self, held: Iterable[tuple[int, int]], until: datetime) -> set[int]:
        """Extend to `until` the leases of the (recharge id, attempt) pairs still processing under that
        attempt; the ids of those renewed."""
        statement = (
            update(Recharge)
            .where(
                col(Recharge.status) == RechargeStatus.PROCESSING,
                or_(
                    *(
                        and_(col(Recharge.id) == recharge_id, col(Recharge.attempts) == attempt)
                        for recharge_id, attempt in held
                    )
                ),
                self.scope.accounts(col(Recharge.account_id)),
            )
            .values(locked_until=until)
            .returning(col(Recharge.id))
        )
        renewed = (await (await self.session.connection()).execute(statement)).scalars().all()
        return {recharge_id for recharge_id in renewed if recharge_id is not None}

    async def locked(self, recharge_id: int) -> Recharge:
        """The recharge, locked until the transaction ends, freshly read."""
        statement = (
            select(Recharge)
            .where(Recharge.id == recharge_id, self.scope.accounts(col(Recharge.account_id)))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.exec(statement)).one()

    async def entry(self, transaction_id: int) -> Transaction | None:
        """The ledger entry a recharge pays for, freshly read (a webhook may have settled it meanwhile)."""
        statement = (
            select(Transaction)
            .where(col(Transaction.id) == transaction_id, self.scope.accounts(col(Transaction.account_id)))
            .execution_options(populate_existing=True)
        )
        return (await self.session.exec(statement)).first()

    async def oldest_due(self, now: datetime) -> datetime | None:
        """When the oldest unfinished recharge due by `now` became due; uses `ix_recharge_due`."""
        statement = select(func.min(col(Recharge.run_after))).where(
            col(Recharge.status).in_(IN_FLIGHT),
            col(Recharge.run_after) <= now,
            self.scope.accounts(col(Recharge.account_id)),
        )
        return (await self.session.exec(statement)).one()
