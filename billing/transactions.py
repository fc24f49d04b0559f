"""The transaction history: newest first, keyset-paginated on (created_at, id), filtered."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from billing.pagination import (
    InvalidArgument,
    Page,
    check_page_size,
    cursor_moment,
    cursor_row_id,
    decode_cursor,
    encode_cursor,
)
from models import Transaction, TransactionKind, TransactionStatus

CURSOR_KIND = "transaction"


@dataclass(frozen=True)
class HistoryFilter:
    kinds: frozenset[TransactionKind] = frozenset()
    statuses: frozenset[TransactionStatus] = frozenset()
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    def __post_init__(self) -> None:
        for name, value in (("since", self.since), ("until", self.until)):
            if value is not None and value.tzinfo is None:
                raise InvalidArgument(f"filter.{name}", "needs a time zone offset")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InvalidArgument("filter", "since must be before until")


def transaction_cursor(entry: Transaction) -> str:
    return encode_cursor(CURSOR_KIND, entry.created_at.isoformat(), str(entry.id))


def _decode(after: str) -> tuple[datetime, int]:
    created, raw_id = decode_cursor(after, CURSOR_KIND, 2)
    return cursor_moment(created), cursor_row_id(raw_id)


def history_query(
    account_id: int, *, first: int, after: str | None = None, where: HistoryFilter = HistoryFilter()
) -> SelectOfScalar[Transaction]:
    """The statement behind one page: `first + 1` rows, so the caller learns whether another page follows."""
    check_page_size(first)
    statement = select(Transaction).where(Transaction.account_id == account_id)
    if where.kinds:
        statement = statement.where(col(Transaction.kind).in_(sorted(where.kinds)))
    if where.statuses:
        statement = statement.where(col(Transaction.status).in_(sorted(where.statuses)))
    if where.since is not None:
        statement = statement.where(col(Transaction.created_at) >= where.since)
    if where.until is not None:
        statement = statement.where(col(Transaction.created_at) < where.until)
    if after is not None:
        created_at, entry_id = _decode(after)
        # A row comparison, not `created_at < c OR (created_at = c AND id < i)`: PostgreSQL turns it into an
        # index bound on (account_id, created_at, id) and seeks to the cursor; the OR form is a filter that
        # walks every newer entry first, so a page 999,000 rows deep would cost as much as reading them all.
        statement = statement.where(
            tuple_(col(Transaction.created_at), col(Transaction.id)) < tuple_(created_at, entry_id)
        )
    statement = statement.order_by(col(Transaction.created_at).desc(), col(Transaction.id).desc())
    return statement.limit(first + 1)


async def history(
    session: AsyncSession,
    account_id: int,
    *,
    first: int,
    after: str | None = None,
    where: HistoryFilter = HistoryFilter(),
) -> Page[Transaction]:
    """One page of an account's history. The caller has already checked the account is visible."""
    statement = history_query(account_id, first=first, after=after, where=where)
    rows = list((await session.exec(statement)).all())
    return Page(rows[:first], has_next=len(rows) > first)
