"""The transaction history: newest first, keyset-paginated on (created_at, id), filtered."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.errors import InvalidArgument
from billing.ledger.repository import HistoryEntry, HistoryPage, LedgerRepository
from billing.pagination import (
    Page,
    check_page_size,
    cursor_moment,
    cursor_row_id,
    decode_cursor,
    encode_cursor,
)
from billing.scope import Scope
from models import TransactionKind, TransactionStatus

CURSOR_KIND = "transaction"


@dataclass(frozen=True)
class HistoryFilter:
    kinds: frozenset[TransactionKind] = frozenset()
    statuses: frozenset[TransactionStatus] = frozenset()
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    def __post_init__(self) -> None:
        """Refusals name the field at fault (`since`, `until`), or `where` (history's name for the filter) for
        the two together."""
        for name, value in (("since", self.since), ("until", self.until)):
            if value is not None and value.tzinfo is None:
                raise InvalidArgument(name, "needs a time zone offset")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InvalidArgument("where", "since must be before until")


def transaction_cursor(entry: HistoryEntry) -> str:
    return encode_cursor(CURSOR_KIND, entry.created_at.isoformat(), str(entry.id))


def _decode(after: str) -> tuple[datetime, int]:
    created, raw_id = decode_cursor(after, CURSOR_KIND, 2)
    return cursor_moment(created), cursor_row_id(raw_id)


def history_page(
    account_id: int, *, first: int, after: str | None = None, where: HistoryFilter = HistoryFilter()
) -> HistoryPage:
    """What one page reads: `first + 1` rows, so the caller learns whether another page follows."""
    check_page_size(first)
    return HistoryPage(
        account_id,
        limit=first + 1,
        kinds=where.kinds,
        statuses=where.statuses,
        since=where.since,
        until=where.until,
        before=_decode(after) if after is not None else None,
    )


def history_query(
    entries: LedgerRepository,
    account_id: int,
    *,
    first: int,
    after: str | None = None,
    where: HistoryFilter = HistoryFilter(),
) -> sqlalchemy.Select[Any]:
    """The statement behind one page, with its values bound (to EXPLAIN it)."""
    return entries.history_statement(history_page(account_id, first=first, after=after, where=where))


async def history(
    session: AsyncSession,
    scope: Scope,
    account_id: int,
    *,
    first: int,
    after: str | None = None,
    where: HistoryFilter = HistoryFilter(),
) -> Page[HistoryEntry]:
    """One page of an account's history: empty for an account outside the scope."""
    rows = await LedgerRepository(session, scope).history_rows(
        history_page(account_id, first=first, after=after, where=where)
    )
    return Page(rows[:first], has_next=len(rows) > first)
