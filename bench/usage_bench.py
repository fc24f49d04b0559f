"""Usage benchmark, run by hand on PostgreSQL (not in CI):

    BENCH_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/billing_bench .venv/bin/python -m bench.usage_bench

1. record_usage in batches of 1,000 events (one account, three categories; then 100 accounts): events per second.
2. The usage overview (monthly_summaries) at 10k, 100k and 1M events in one month: it reads the rollup, so its
   latency must stay flat. The volume is inserted as raw rows in bulk (generate_series), and the rollup is set
   to their sums, as record_usage would have left it.

The database named in the URL is dropped and re-created.
"""

import asyncio
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from billing.auth import Principal
from billing.db import create_engine, session_factory, unit_of_work
from billing.months import Month
from billing.usage import UsageEvent, record_usage
from billing.usage_summary import monthly_summaries
from models import Account, LeadPlanSubscription, PrincipalKind

URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/billing_bench")
REPORTER = Principal(kind=PrincipalKind.USAGE_REPORTER, api_key_id=0)
ADMIN = Principal(kind=PrincipalKind.ADMIN, api_key_id=0)
MONTH = Month(2026, 3)
AT = datetime(2026, 3, 14, 12, tzinfo=UTC)


async def recreate_database() -> None:
    parsed = make_url(URL)
    admin = await asyncpg.connect(
        host=parsed.host, port=parsed.port or 5432, user=parsed.username, database="postgres"
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{parsed.database}"')
    finally:
        await admin.close()


def migrate(connection: Connection) -> None:
    config = Config("alembic.ini")
    config.attributes["configure_logger"] = False
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def batch(account_ids: list[int], plans: dict[int, int], prefix: str) -> list[UsageEvent]:
    """1,000 events spread over the accounts, a third of each category."""
    events = []
    for index in range(1_000):
        account_id = account_ids[index % len(account_ids)]
        category = ("lead", "call", "ai_agent")[index % 3]
        events.append(
            UsageEvent(
                external_id=f"{prefix}-{index}",
                account_id=account_id,
                occurred_at=AT,
                category=category,
                cost={"lead": Decimal("25.00"), "call": Decimal("0.45"), "ai_agent": Decimal("0.03")}[
                    category
                ],
                lead_plan_id=plans[account_id] if category == "lead" else None,
                duration_seconds=90 if category == "call" else None,
                input_tokens=900 if category == "ai_agent" else None,
                output_tokens=300 if category == "ai_agent" else None,
            )
        )
    return events


async def main() -> None:
    await recreate_database()
    engine = create_engine(URL)
    async with engine.begin() as connection:
        await connection.run_sync(migrate)
    factory = session_factory(engine)

    async with unit_of_work(factory) as session:
        accounts = [Account(name=f"Bench {i}", currency="USD", country="US") for i in range(101)]
        session.add_all(accounts)
        await session.flush()
        ids = [a.id for a in accounts if a.id is not None]
        plans = {
            account_id: LeadPlanSubscription(
                account_id=account_id,
                name="Bench plan",
                monthly_budget_minor=10**9,
                price_per_lead_minor=2_500,
                currency="USD",
            )
            for account_id in ids
        }
        session.add_all(plans.values())
        await session.flush()
        plan_ids = {account_id: plan.id or 0 for account_id, plan in plans.items()}

    for label, targets in (("1 account", ids[:1]), ("100 accounts", ids[1:101])):
        batches = 20
        started = time.perf_counter()
        for number in range(batches):
            async with unit_of_work(factory) as session:
                await record_usage(
                    session,
                    REPORTER,
                    batch(targets, plan_ids, f"{label}-{number}"),
                    now=AT + timedelta(hours=1),
                )
        elapsed = time.perf_counter() - started
        print(
            f"recordUsage, batches of 1,000 over {label}: {batches * 1_000 / elapsed:,.0f} events/s "
            f"({elapsed / batches * 1_000:.0f} ms per batch)"
        )

    overview_account = ids[0]
    start, end = MONTH.bounds("UTC")
    span = int((end - start).total_seconds())
    inserted = 0
    for volume in (10_000, 100_000, 1_000_000):
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO usage_event (account_id, external_id, category, occurred_at, cost_minor, currency,"
                    " duration_seconds, recorded_at)"
                    " SELECT :account, 'bulk-' || n, 'call', CAST(:start AS timestamptz) + (n % CAST(:span AS bigint)) * interval '1 second', 45, 'USD',"
                    " 90, now() FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS n"
                ),
                {
                    "account": overview_account,
                    "start": start,
                    "span": span,
                    "first": inserted,
                    "last": volume - 1,
                },
            )
            inserted = volume
            await connection.execute(
                text(
                    "UPDATE usage_rollup SET call_spent_minor = s.spent, calls = s.calls, call_seconds = s.seconds"
                    " FROM (SELECT sum(cost_minor) AS spent, count(*) AS calls, sum(duration_seconds) AS seconds"
                    " FROM usage_event WHERE account_id = :account AND category = 'call'"
                    " AND occurred_at >= :start AND occurred_at < :end) AS s"
                    " WHERE account_id = :account AND month = :month"
                ),
                {"account": overview_account, "start": start, "end": end, "month": str(MONTH)},
            )
            await connection.execute(text("ANALYZE usage_event"))
        timings = []
        for _ in range(200):
            async with unit_of_work(factory) as session:
                started = time.perf_counter()
                summaries = await monthly_summaries(session, ADMIN, [overview_account], MONTH)
                timings.append((time.perf_counter() - started) * 1_000)
        calls = summaries[overview_account].calling.calls
        p95 = statistics.quantiles(timings, n=20)[18]
        print(
            f"usage overview at {volume:>9,} events this month (calls counted {calls:,}): "
            f"median {statistics.median(timings):.2f} ms, p95 {p95:.2f} ms"
        )
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
