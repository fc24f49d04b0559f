"""Monthly rollups equal the sums over raw events, whatever the events, months and time zones (property-based).

Hypothesis runs every example inside the one rolled-back transaction of this test, so each example makes its
own account: examples never see each other's rows.
"""

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlalchemy import select as sa_select  # sqlmodel's select stops at four columns
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.months import Month, month_of
from billing.usage.service import UsageEvent, record_usage
from models import UsageCategory, UsageRollup
from models import UsageEvent as UsageEventRow
from tests.support.factories import create_account
from tests.support.usage_factories import REPORTER, create_lead_plan

ZONES = [
    "UTC",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
]
# Month starts in UTC; events cluster within 30 hours of them, where time zones disagree about the month.
BOUNDARIES = [datetime(2026, month, 1, tzinfo=UTC) for month in range(1, 13)]
# Each boundary's events are reported just after the last of them, while both their months still take events.
REPORTED_AFTER = timedelta(hours=31)

event_spec = st.tuples(
    st.sampled_from(list(UsageCategory)),
    st.sampled_from(BOUNDARIES),
    st.integers(min_value=-30 * 60, max_value=30 * 60),  # minutes from the boundary
    st.integers(min_value=0, max_value=5_000),  # cost in cents
    st.integers(min_value=0, max_value=3_600),  # call seconds
    st.tuples(st.integers(0, 100_000), st.integers(0, 100_000)),  # AI tokens
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    zone=st.sampled_from(ZONES),
    specs=st.lists(event_spec, min_size=1, max_size=30),
    batches=st.integers(min_value=1, max_value=3),
)
async def test_rollups_equal_the_raw_sums(
    session: AsyncSession,
    zone: str,
    specs: list[tuple[UsageCategory, datetime, int, int, int, tuple[int, int]]],
    batches: int,
) -> None:
    account = await create_account(session, time_zone=zone)
    plan = await create_lead_plan(session, account)
    assert account.id is not None
    by_boundary: dict[datetime, list[UsageEvent]] = defaultdict(list)
    for index, (category, boundary, minutes, cents, seconds, tokens) in enumerate(specs):
        by_boundary[boundary].append(
            UsageEvent(
                external_id=f"e{index}",
                account_id=account.id,
                occurred_at=boundary + timedelta(minutes=minutes),
                category=category,
                cost=Decimal(cents).scaleb(-2),
                lead_plan_id=plan.id if category is UsageCategory.LEAD else None,
                duration_seconds=seconds if category is UsageCategory.CALL else None,
                input_tokens=tokens[0] if category is UsageCategory.AI_AGENT else None,
                output_tokens=tokens[1] if category is UsageCategory.AI_AGENT else None,
            )
        )
    for boundary, reported in sorted(by_boundary.items()):
        for start in range(batches):
            await record_usage(session, REPORTER, reported[start::batches], now=boundary + REPORTED_AFTER)
    events = [event for reported in by_boundary.values() for event in reported]

    rollups = (await session.exec(select(UsageRollup).where(UsageRollup.account_id == account.id))).all()
    assert {r.month for r in rollups} == {str(month_of(e.occurred_at, zone)) for e in events}
    for rollup in rollups:
        year, month = map(int, rollup.month.split("-"))
        assert _as_sums(rollup) == await _raw_sums(session, account.id, Month(year, month), zone), (
            rollup.month
        )


def _as_sums(rollup: UsageRollup) -> dict[str, tuple[int, ...]]:
    return {
        "lead": (rollup.lead_spent_minor, rollup.leads),
        "call": (rollup.call_spent_minor, rollup.calls, rollup.call_seconds),
        "ai_agent": (
            rollup.ai_cost_minor,
            rollup.ai_requests,
            rollup.ai_input_tokens,
            rollup.ai_output_tokens,
        ),
    }


async def _raw_sums(
    session: AsyncSession, account_id: int, month: Month, zone: str
) -> dict[str, tuple[int, ...]]:
    """Summed in SQL over the raw events between the month's bounds: a path independent of the rollup code."""
    start, end = month.bounds(zone)
    row = UsageEventRow
    statement = (
        sa_select(
            col(row.category),
            func.coalesce(func.sum(row.cost_minor), 0),
            func.count(),
            func.coalesce(func.sum(row.duration_seconds), 0),
            func.coalesce(func.sum(row.input_tokens), 0),
            func.coalesce(func.sum(row.output_tokens), 0),
        )
        .where(col(row.account_id) == account_id, col(row.occurred_at) >= start, col(row.occurred_at) < end)
        .group_by(col(row.category))
    )
    result = await (await session.connection()).execute(statement)
    found = {category: tuple(int(v or 0) for v in values) for category, *values in result.all()}
    cost, count, seconds, _, _ = found.get("call", (0, 0, 0, 0, 0))
    ai = found.get("ai_agent", (0, 0, 0, 0, 0))
    return {
        "lead": found.get("lead", (0, 0, 0, 0, 0))[:2],
        "call": (cost, count, seconds),
        "ai_agent": (ai[0], ai[1], ai[3], ai[4]),
    }
