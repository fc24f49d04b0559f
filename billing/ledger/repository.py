"""The ledger's queries: accounts' balances locked for a posting, entries, and the history's pages.

The ledger service (billing/ledger/service.py) is the only caller that moves a balance; this module only runs its
statements, each limited to the scope's accounts: a posting's (locks, idempotency check, balance update) to those
it may write, every other read to those it may read (billing/scope.py).
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, partial
from typing import Any, NamedTuple

import sqlalchemy
from sqlalchemy import BigInteger, Integer, bindparam, case, func, insert, literal, tuple_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.keys.repository import Reach, reach_rule
from billing.scope import Scope
from billing.sql import among_parameter, columns
from models import Account, Transaction, TransactionKind, TransactionStatus


class HistoryEntry(NamedTuple):
    """A history page's entry: the columns of `Transaction` the history shows, without an ORM entity."""

    id: int
    account_id: int
    kind: str
    status: str
    amount_minor: int
    currency: str
    description: str
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    settled_at: datetime | None


# The history's columns: the statement's WHERE differs by filter, its columns never.
_HISTORY_COLUMNS = columns(Transaction, HistoryEntry._fields)


class LedgerRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    async def lock_accounts(self, account_ids: Iterable[int]) -> dict[int, Account]:
        """The accounts found (among those the scope writes), locked until the transaction ends, with fresh balances.

        Locked in id order, the order every writer takes them in, so writers of overlapping accounts never
        deadlock.
        """
        statement = (
            select(Account)
            .where(col(Account.id).in_(set(account_ids)), self.scope.writable(col(Account.id)))
            .order_by(col(Account.id))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return {
            account.id: account
            for account in (await self.session.exec(statement)).all()
            if account.id is not None
        }

    async def entry(self, transaction_id: int) -> Transaction | None:
        """The entry by id, if it belongs to an account of the scope."""
        if self.scope.principal is None:
            return await self.session.get(Transaction, transaction_id)  # the identity map may answer
        statement = select(Transaction).where(
            col(Transaction.id) == transaction_id, self.scope.accounts(col(Transaction.account_id))
        )
        return (await self.session.exec(statement)).first()

    async def reread(self, entry: Transaction) -> None:
        """Load the entry's row again (after its account was locked: another process may have settled it)."""
        await self.session.refresh(entry)

    async def by_idempotency_key(self, account_id: int, key: str) -> Transaction | None:
        statement = select(Transaction).where(
            Transaction.account_id == account_id,
            Transaction.idempotency_key == key,
            self.scope.accounts(col(Transaction.account_id)),
        )
        return (await self.session.exec(statement)).first()

    async def by_idempotency_keys(self, account_ids: set[int], keys: set[str]) -> Sequence[Transaction]:
        """Entries of these accounts under any of these keys (the caller picks the pairs it asked for): a
        posting's idempotency check."""
        statement = select(Transaction).where(
            col(Transaction.account_id).in_(account_ids),
            col(Transaction.idempotency_key).in_(keys),
            self.scope.writable(col(Transaction.account_id)),
        )
        return (await self.session.exec(statement)).all()

    async def insert_entries(self, rows: Sequence[Mapping[str, Any]]) -> Sequence[Transaction]:
        """One multi-row INSERT ... RETURNING; the rows' accounts were locked through this repository."""
        statement = insert(Transaction).returning(Transaction)
        return (await self.session.exec(statement, params=rows)).scalars().all()

    async def add_to_balances(self, deltas: Mapping[int, int]) -> None:
        """One UPDATE adding each account's delta to its stored balance."""
        # BIGINT binds: a plain int would bind as INTEGER on asyncpg, and amounts may exceed 32 bits.
        delta = case(
            {account_id: literal(d, BigInteger) for account_id, d in deltas.items()}, value=col(Account.id)
        )
        statement = (
            update(Account)
            .where(col(Account.id).in_(deltas), self.scope.writable(col(Account.id)))
            .values(balance_minor=col(Account.balance_minor) + delta)
        )
        await (await self.session.connection()).execute(statement)

    async def flush(self) -> None:
        await self.session.flush()

    async def succeeded_sum(self, account_id: int) -> int:
        """The sum of the account's succeeded entries."""
        statement = select(func.coalesce(func.sum(Transaction.amount_minor), 0)).where(
            Transaction.account_id == account_id,
            col(Transaction.status) == TransactionStatus.SUCCEEDED,
            self.scope.accounts(col(Transaction.account_id)),
        )
        return int((await self.session.exec(statement)).one())

    async def reversed_sum(self, original_id: int, kind: TransactionKind) -> int:
        """The sum of the entries of `kind` that reverse the entry `original_id`."""
        statement = select(func.coalesce(func.sum(Transaction.amount_minor), 0)).where(
            Transaction.reverses_id == original_id,
            Transaction.kind == kind,
            self.scope.accounts(col(Transaction.account_id)),
        )
        return int((await self.session.exec(statement)).one())

    def history_statement(self, page: "HistoryPage") -> sqlalchemy.Select[Any]:
        """The statement `history_rows` runs for `page`, with its values bound (to EXPLAIN or print it)."""
        statement = _history(self.session.get_bind().dialect.name, self.scope.reach, page.shape)
        return statement.params({**page.parameters(), **self.scope.parameters()})

    async def history_rows(self, page: "HistoryPage") -> list[HistoryEntry]:
        """The entries of one history page, as Core rows (half the CPU of entities); the statement is built once
        per filter shape, database kind and scope rule."""
        rows = await self.scope.rows(self.session, partial(_history, shape=page.shape), page.parameters())
        return [HistoryEntry._make(row) for row in rows]


@dataclass(frozen=True)
class HistoryPage:
    """Which history entries to read: newest first, created in [since, until), older than the keyset `before`
    (created_at, id), of these kinds and statuses (empty: any), at most `limit`."""

    account_id: int
    limit: int
    kinds: frozenset[TransactionKind] = frozenset()
    statuses: frozenset[TransactionStatus] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    before: tuple[datetime, int] | None = None

    @property
    def shape(self) -> "HistoryShape":
        return HistoryShape(
            bool(self.kinds),
            bool(self.statuses),
            self.since is not None,
            self.until is not None,
            self.before is not None,
        )

    def parameters(self) -> dict[str, Any]:
        values: dict[str, Any] = {"account_id": self.account_id, "limit": self.limit}
        if self.kinds:
            values["kinds"] = sorted(self.kinds)
        if self.statuses:
            values["statuses"] = sorted(self.statuses)
        if self.since is not None:
            values["since"] = self.since
        if self.until is not None:
            values["until"] = self.until
        if self.before is not None:
            values["before_created_at"], values["before_id"] = self.before
        return values


class HistoryShape(NamedTuple):
    """Which of the history's filters a page uses: one statement per shape."""

    kinds: bool
    statuses: bool
    since: bool
    until: bool
    before: bool


@cache  # built once per filter shape, database kind and scope rule: a history page only binds values
def _history(dialect: str, reach: Reach, shape: HistoryShape) -> sqlalchemy.Select[Any]:
    account_id, created_at, row_id = columns(Transaction, ("account_id", "created_at", "id"))
    statement = sqlalchemy.select(*_HISTORY_COLUMNS).where(
        account_id == bindparam("account_id"), reach_rule(reach, account_id)
    )
    if shape.kinds:
        statement = statement.where(among_parameter(dialect, col(Transaction.kind), "kinds"))
    if shape.statuses:
        statement = statement.where(among_parameter(dialect, col(Transaction.status), "statuses"))
    if shape.since:
        statement = statement.where(created_at >= bindparam("since", type_=created_at.type))
    if shape.until:
        statement = statement.where(created_at < bindparam("until", type_=created_at.type))
    if shape.before:
        # A row comparison, not `created_at < c OR (created_at = c AND id < i)`: PostgreSQL turns it into an
        # index bound on (account_id, created_at, id) and seeks to the cursor; the OR form is a filter that
        # walks every newer entry first, so a page 999,000 rows deep would cost as much as reading them all.
        cursor = tuple_(
            bindparam("before_created_at", type_=created_at.type),
            bindparam("before_id", type_=row_id.type),
        )
        statement = statement.where(tuple_(created_at, row_id) < cursor)
    statement = statement.order_by(created_at.desc(), row_id.desc())
    return statement.limit(bindparam("limit", type_=Integer))
