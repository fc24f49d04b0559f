"""Usage benchmark, run by hand on PostgreSQL (not in CI):

    USAGE_BENCH_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/billing_usage_bench .venv/bin/python -m bench.usage_bench

1. Recording usage in batches of 1,000 events (three categories) over one account, then over 100 accounts:
   events per second, both through the `recordUsage` mutation (the app from `server.create_app`, over ASGI,
   with a usage-reporter key) and by calling `record_usage` directly (the GraphQL layer's share is the gap).
2. The usage overview (monthly_summaries) at 10k, 100k and 1M events in one month: it reads the rollup, so its
   latency must stay flat. The volume is inserted as raw rows in bulk (generate_series), and the rollup is set
   to their sums, as record_usage would have left it.

The database named in the URL is dropped and re-created (a database of its own: not the one of
bench.gateway_vs_baseline, whose data takes minutes to build). A few minutes on two cores.
"""

import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, Generic, TypeVar

import asyncpg
import httpx
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.operations import RECORD_USAGE
from billing.config import Settings
from billing.db import SessionFactory, create_engine, session_factory, unit_of_work
from billing.keys import service as auth
from billing.keys.service import Principal
from billing.months import month_of
from billing.usage.service import UsageEvent, record_usage
from billing.usage.summary import monthly_summaries
from models import Account, LeadPlanSubscription, PrincipalKind
from schema.node import to_global_id
from server import create_app

URL = os.environ.get(
    "USAGE_BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/billing_usage_bench"
)
REPORTER = Principal(kind=PrincipalKind.USAGE_REPORTER, api_key_id=0)
ADMIN = Principal(kind=PrincipalKind.ADMIN, api_key_id=0)
# An hour ago: in the past, as the mutation (which uses the real clock) requires, and in a month it still takes.
AT = datetime.now(UTC) - timedelta(hours=1)
MONTH = month_of(AT, "UTC")
BATCHES = 20  # timed batches of each way, after one warm-up batch


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


def as_input(event: UsageEvent) -> dict[str, object]:
    """The event as the reporting services send it: a `UsageEventInput`."""
    return {
        "externalId": event.external_id,
        "accountId": to_global_id("Account", event.account_id),
        "occurredAt": event.occurred_at.isoformat(),
        "category": event.category,
        "cost": str(event.cost),
        "leadPlanId": to_global_id("LeadPlan", event.lead_plan_id) if event.lead_plan_id else None,
        "durationSeconds": event.duration_seconds,
        "inputTokens": event.input_tokens,
        "outputTokens": event.output_tokens,
    }


Batch = TypeVar("Batch")


@dataclass(frozen=True)
class Way(Generic[Batch]):
    """One way of recording a batch of 1,000 events: what is prepared before the clock starts (the events; for
    GraphQL, the encoded request body, as the reporting service would send it), and recording it."""

    prepare: Callable[[str], Batch]
    record: Callable[[Batch], Awaitable[None]]


async def events_per_second(ways: dict[str, Way[Any]], label: str) -> dict[str, float]:
    """Events/s of each way. Their batches alternate, in turns (a, b, b, a, a, b, ...), each its own
    transaction, so that drift of the machine and the database during the run (autovacuum, checkpoints, a
    neighbour's load) falls on every way alike rather than on whichever ran second. One untimed batch each warms
    up first."""
    for name, way in ways.items():
        await way.record(way.prepare(f"{label}-{name}-warm-up"))
    batches = {
        name: [way.prepare(f"{label}-{name}-{n}") for n in range(BATCHES)] for name, way in ways.items()
    }
    elapsed = dict.fromkeys(ways, 0.0)
    for number in range(BATCHES):
        for name in list(ways) if number % 2 == 0 else reversed(ways):
            started = time.perf_counter()
            await ways[name].record(batches[name][number])
            elapsed[name] += time.perf_counter() - started
    return {name: BATCHES * 1_000 / seconds for name, seconds in elapsed.items()}


def record_usage_body(events: list[UsageEvent]) -> bytes:
    """The recordUsage request a reporting service sends for `events`, encoded."""
    return json.dumps(
        {"query": RECORD_USAGE, "variables": {"events": [as_input(e) for e in events]}}
    ).encode()


def graphql_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def check_recorded(answer: bytes) -> None:
    """A recordUsage answer that recorded the whole batch."""
    result = json.loads(answer)["data"]["recordUsage"]
    assert result == {"__typename": "RecordUsageSuccess", "recorded": 1_000}, result


async def record_through_graphql(client: httpx.AsyncClient, key: str, body: bytes) -> None:
    check_recorded((await client.post("/graphql", content=body, headers=graphql_headers(key))).content)


async def bench_recording(factory: SessionFactory, ids: list[int], plans: dict[int, int], key: str) -> None:
    app = create_app(Settings(database_url=URL, embedded_worker=False))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=60) as client,
    ):
        for label, targets in (("1 account", ids[:1]), ("100 accounts", ids[1:101])):

            def events(prefix: str, targets: list[int] = targets) -> list[UsageEvent]:
                return batch(targets, plans, prefix)

            async def direct(events: list[UsageEvent]) -> None:
                async with unit_of_work(factory) as session:
                    await record_usage(session, REPORTER, events, now=AT + timedelta(hours=1))

            rates = await events_per_second(
                {
                    "graphql": Way(
                        lambda prefix: record_usage_body(events(prefix)),
                        partial(record_through_graphql, client, key),
                    ),
                    "direct": Way(events, direct),
                },
                label,
            )
            graphql, plain = rates["graphql"], rates["direct"]
            print(
                f"recordUsage, batches of 1,000 over {label}: {graphql:,.0f} events/s through GraphQL, "
                f"{plain:,.0f} events/s calling record_usage directly"
            )


async def bench_overview(engine: AsyncEngine, factory: SessionFactory, account_id: int) -> None:
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
                {"account": account_id, "start": start, "span": span, "first": inserted, "last": volume - 1},
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
                {"account": account_id, "start": start, "end": end, "month": str(MONTH)},
            )
            await connection.execute(text("ANALYZE usage_event"))
        timings = []
        for _ in range(200):
            async with unit_of_work(factory) as session:
                started = time.perf_counter()
                summaries = await monthly_summaries(session, ADMIN, [account_id], MONTH)
                timings.append((time.perf_counter() - started) * 1_000)
        calls = summaries[account_id].calling.calls
        p95 = statistics.quantiles(timings, n=20)[18]
        print(
            f"usage overview at {volume:>9,} events this month (calls counted {calls:,}): "
            f"median {statistics.median(timings):.2f} ms, p95 {p95:.2f} ms"
        )


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
        _, key = await auth.create_api_key(session, kind=PrincipalKind.USAGE_REPORTER, name="bench")

    await bench_recording(factory, ids, plan_ids, key)
    await bench_overview(engine, factory, ids[0])
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
