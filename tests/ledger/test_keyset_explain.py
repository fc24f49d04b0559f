"""The history's keyset predicate seeks on the (account_id, created_at, id) index, however deep the cursor.

PostgreSQL shows it in EXPLAIN: the row comparison `(created_at, id) < (c, i)` is part of the Index Cond, so the
scan starts at the cursor. The OR form (`created_at < c OR (created_at = c AND id < i)`) would appear as a Filter
over an index scan that walks every newer entry first (about 345 ms for a page 999,000 entries deep, against
25 ms for page 1, in issue 10's benchmark). Ties on created_at are checked on both databases.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.ledger import history as transactions
from billing.ledger.history import HistoryFilter
from billing.ledger.repository import LedgerRepository
from billing.pagination import encode_cursor
from models import Transaction, TransactionKind, TransactionStatus
from tests.support.factories import SYSTEM, create_account

ENTRIES = 20_000
START = datetime(2025, 1, 1, tzinfo=UTC)
FILTERS = {
    "no filter": HistoryFilter(),
    "kind and status": HistoryFilter(
        kinds=frozenset({TransactionKind.USAGE_CALLS}), statuses=frozenset({TransactionStatus.SUCCEEDED})
    ),
    "dates": HistoryFilter(since=START, until=START + timedelta(days=365)),
}


INDEX_SCANS = ("Index Scan", "Index Only Scan", "Bitmap Index Scan")


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


async def explain(session: AsyncSession, account_id: int, after: str, where: HistoryFilter) -> dict[str, Any]:
    entries = LedgerRepository(session, SYSTEM)
    statement = transactions.history_query(entries, account_id, first=50, after=after, where=where)
    sql = statement.compile(dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True})
    plan = (await (await session.connection()).execute(text(f"EXPLAIN (FORMAT JSON) {sql}"))).scalar_one()
    root: dict[str, Any] = plan[0]["Plan"]
    return root


@pytest.mark.postgres_only
@pytest.mark.parametrize("name", list(FILTERS))
async def test_a_deep_history_page_seeks_on_the_index(session: AsyncSession, backend: str, name: str) -> None:
    if backend != "postgresql":
        pytest.skip("EXPLAIN output is PostgreSQL's; SQLite pages are checked by the other tests")
    account = await create_account(session)
    neighbour = await create_account(session)  # so the account_id bound has rows on either side to skip
    kinds = [kind.value for kind in TransactionKind]
    statuses = [status.value for status in TransactionStatus]
    connection = await session.connection()
    await connection.execute(
        text(
            "INSERT INTO ledger_transaction (account_id, kind, status, amount_minor, currency, description,"
            " idempotency_key, created_at)"
            " SELECT a, (CAST(:kinds AS text[]))[1 + n % :kind_count], (CAST(:statuses AS text[]))[1 + n % :status_count], -100, 'USD',"
            " 'entry', 'explain-' || n, CAST(:start AS timestamptz) + n * interval '1 minute'"
            " FROM generate_series(1, :entries) AS n, unnest(CAST(:accounts AS integer[])) AS a"
        ),
        {
            "kinds": kinds,
            "kind_count": len(kinds),
            "statuses": statuses,
            "status_count": len(statuses),
            "start": START,
            "entries": ENTRIES,
            "accounts": [account.id, neighbour.id],
        },
    )
    await connection.execute(text("ANALYZE ledger_transaction"))
    assert account.id is not None
    # A cursor 15,000 entries below page 1, with 5,000 older ones left to page through.
    deep = START + (ENTRIES - 15_000) * timedelta(minutes=1)
    after = encode_cursor(transactions.CURSOR_KIND, deep.isoformat(), str(2**31 - 1))

    root = await explain(session, account.id, after, FILTERS[name])

    nodes = list(plan_nodes(root))
    # An index scan (or, when the planner expects few matches past the cursor, a bitmap index scan that
    # collects them) bounded by the cursor: the row comparison is where the scan starts, not a Filter.
    scans = [node for node in nodes if node["Node Type"] in INDEX_SCANS]
    assert [scan["Index Name"] for scan in scans] == ["ix_ledger_transaction_history"], root
    assert "ROW(created_at, id) < ROW(" in scans[0]["Index Cond"], scans[0]
    assert not [node for node in nodes if "created_at" in node.get("Filter", "")], root


async def test_entries_created_at_the_same_moment_page_without_gaps(session: AsyncSession) -> None:
    """The cursor's id breaks ties: a page boundary between entries of one moment skips or repeats none."""
    account = await create_account(session)
    assert account.id is not None
    moment = datetime(2026, 3, 1, 12, tzinfo=UTC)
    # Three moments, the middle one shared by five entries.
    for index, seconds in enumerate([0, 1, 1, 1, 1, 1, 2]):
        session.add(
            Transaction(
                account_id=account.id,
                kind=TransactionKind.TOP_UP,
                status=TransactionStatus.SUCCEEDED,
                amount_minor=100,
                currency="USD",
                description=f"tie {index}",
                idempotency_key=f"tie-{index}",
                created_at=moment + timedelta(seconds=seconds),
            )
        )
    await session.flush()

    seen: list[str] = []
    after = None
    while True:
        page = await transactions.history(session, SYSTEM, account.id, first=2, after=after)
        seen += [entry.description for entry in page.items]
        if not page.has_next:
            break
        after = transactions.transaction_cursor(page.items[-1])
    assert seen == [f"tie {index}" for index in (6, 5, 4, 3, 2, 1, 0)]
