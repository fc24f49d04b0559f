"""Recording usage: ledger debits per category, idempotency, whole-batch rejection, funding state, SQL cost."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.funding import FundingState, funding_states
from billing.keys.service import Principal
from billing.ledger import service as ledger
from billing.usage.service import MAX_EVENTS_PER_BATCH, UsageRejected, record_usage
from models import Account, PrincipalKind, Transaction, TransactionKind, UsageEvent, UsageRollup
from tests.support.factories import SYSTEM, create_account
from tests.support.ledger_checks import checked_balance
from tests.support.statements import recorded_statements
from tests.support.usage_factories import ADMIN, REPORTER, ai_request, call, create_lead_plan, lead

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=2)


async def test_a_batch_is_debited_once_per_category_and_linked_to_its_events(session: AsyncSession) -> None:
    account = await create_account(session)
    plan = await create_lead_plan(session, account)
    events = [
        *(lead(account, plan, EARLIER) for _ in range(3)),
        call(account, EARLIER, seconds=120, cost="1.10"),
        ai_request(account, EARLIER, tokens=(1_000, 500), cost="0.07"),
    ]
    result = await record_usage(session, REPORTER, events, now=NOW)

    assert result.recorded == 5 and result.duplicates == 0
    descriptions = sorted(t.description for t in result.transactions)
    assert descriptions == [
        "Calls: 1 (2.0 min)",
        "Claude Agent: 1 requests (1,500 tokens)",
        "Leads: 3 delivered",
    ]
    assert sorted(t.amount_minor for t in result.transactions) == [-7_500, -110, -7]
    assert account.balance_minor == -7_617  # nothing is dropped when the balance cannot cover it
    linked = (await session.exec(select(UsageEvent.transaction_id, UsageEvent.category))).all()
    by_category = {t.kind.removeprefix("usage_"): t.id for t in result.transactions}
    assert {category: {tid} for tid, category in linked} == {
        "lead": {by_category["leads"]},
        "call": {by_category["calls"]},
        "ai_agent": {by_category["ai_agent"]},
    }
    assert account.balance_minor == await checked_balance(session, account)


async def test_a_retried_event_is_applied_once(session: AsyncSession) -> None:
    account = await create_account(session)
    first = [call(account, EARLIER, key="c-1"), call(account, EARLIER, key="c-2")]
    await record_usage(session, REPORTER, first, now=NOW)
    again = await record_usage(session, REPORTER, [*first, call(account, EARLIER, key="c-3")], now=NOW)
    within = await record_usage(session, REPORTER, [call(account, EARLIER, key="c-4")] * 2, now=NOW)

    assert (again.recorded, again.duplicates) == (1, 2)
    assert (within.recorded, within.duplicates) == (1, 1)
    assert account.balance_minor == -4 * 45
    rollup = (await session.exec(select(UsageRollup).where(UsageRollup.account_id == account.id))).one()
    assert (rollup.calls, rollup.call_spent_minor) == (4, 180)


async def test_the_same_external_id_on_two_accounts_is_two_events(session: AsyncSession) -> None:
    one, two = await create_account(session), await create_account(session)
    result = await record_usage(
        session, REPORTER, [call(one, EARLIER, key="x"), call(two, EARLIER, key="x")], now=NOW
    )
    assert result.recorded == 2


async def test_one_invalid_event_rejects_the_whole_batch_with_a_problem_per_event(
    session: AsyncSession,
) -> None:
    account, other = await create_account(session), await create_account(session)
    plan, others_plan = await create_lead_plan(session, account), await create_lead_plan(session, other)
    events = [
        call(account, EARLIER, key="good"),
        call(account, EARLIER)._replace(account_id=999_999, external_id="nobody"),
        call(account, EARLIER, cost="-1.00", key="negative"),
        call(account, EARLIER)._replace(category="sms", external_id="sms"),
        call(account, NOW + timedelta(minutes=6), key="future"),
        lead(account, others_plan, EARLIER, key="foreign-plan"),
        call(account, EARLIER, cost="0.001", key="too-precise"),
        lead(account, plan, NOW + timedelta(minutes=4), key="skewed-clock-is-fine"),
    ]
    with pytest.raises(UsageRejected) as rejected:
        await record_usage(session, REPORTER, events, now=NOW)

    found = [(p.index, p.external_id, p.field) for p in rejected.value.problems]
    assert found == [
        (1, "nobody", "account_id"),
        (2, "negative", "cost"),
        (3, "sms", "category"),
        (4, "future", "occurred_at"),
        (5, "foreign-plan", "lead_plan_id"),
        (6, "too-precise", "cost"),
    ]
    assert (await session.exec(select(UsageEvent))).all() == []
    assert account.balance_minor == 0


async def test_a_batch_over_the_limit_is_rejected(session: AsyncSession) -> None:
    account = await create_account(session)
    events = [call(account, EARLIER) for _ in range(MAX_EVENTS_PER_BATCH + 1)]
    with pytest.raises(UsageRejected) as rejected:
        await record_usage(session, REPORTER, events, now=NOW)
    assert [(p.index, p.field) for p in rejected.value.problems] == [(MAX_EVENTS_PER_BATCH, "events")]


async def test_an_events_cost_is_at_most_a_million_in_its_accounts_currency(session: AsyncSession) -> None:
    dollars, yen = await create_account(session), await create_account(session, currency="JPY")
    events = [
        call(dollars, EARLIER, cost="1000000.00", key="ceiling"),
        call(dollars, EARLIER, cost="1000000.01", key="over"),
        call(dollars, EARLIER, cost="9999999999999999", key="overflowed-the-ledger"),
        call(yen, EARLIER, cost="1000000", key="yen-ceiling"),
        call(yen, EARLIER, cost="1000001", key="yen-over"),
    ]
    with pytest.raises(UsageRejected) as rejected:
        await record_usage(session, REPORTER, events, now=NOW)
    assert [(p.index, p.field, p.message) for p in rejected.value.problems] == [
        (1, "cost", "must be at most $1,000,000.00"),
        (2, "cost", "must be at most $1,000,000.00"),
        (4, "cost", "must be at most ¥1,000,000"),
    ]

    assert (await record_usage(session, REPORTER, [events[0], events[3]], now=NOW)).recorded == 2
    assert (dollars.balance_minor, yen.balance_minor) == (-100_000_000, -1_000_000)


async def test_a_batch_that_would_take_a_balance_beyond_the_ledgers_bound_names_the_event_crossing_it(
    session: AsyncSession,
) -> None:
    deep, other = await create_account(session), await create_account(session)
    assert deep.id is not None
    await ledger.post(
        session,
        SYSTEM,
        account_id=deep.id,
        kind=TransactionKind.ADJUSTMENT,
        amount_minor=-(ledger.MAX_BALANCE_MINOR - 150),
        description="Years of usage",
        idempotency_key="deep",
    )
    events = [
        call(deep, EARLIER, cost="1.00", key="fits"),
        call(other, EARLIER, cost="1.00", key="other"),
        call(deep, EARLIER, cost="1.00", key="fits"),  # a repeat moves nothing
        call(deep, EARLIER, cost="1.00", key="crosses"),
        call(deep, EARLIER, cost="1.00", key="beyond"),
    ]
    with pytest.raises(UsageRejected) as rejected:
        await record_usage(session, REPORTER, events, now=NOW)

    assert [(p.index, p.external_id, p.field, p.message) for p in rejected.value.problems] == [
        (
            3,
            "crosses",
            "cost",
            "would take the account's balance below -$10,000,000,000,000.00, the lowest an account may hold;"
            " add funds first",
        )
    ]
    assert (await session.exec(select(UsageEvent))).all() == []
    assert await checked_balance(session, deep) == 150 - ledger.MAX_BALANCE_MINOR
    assert await checked_balance(session, other) == 0
    assert (await record_usage(session, REPORTER, events[:3], now=NOW)).recorded == 2
    assert await checked_balance(session, deep) == 50 - ledger.MAX_BALANCE_MINOR


async def test_an_event_is_dated_from_the_start_of_the_previous_month_in_its_accounts_time_zone(
    session: AsyncSession,
) -> None:
    account = await create_account(session, time_zone="America/New_York")
    february = datetime(2026, 2, 1, 5, tzinfo=UTC)  # its first instant in New York (EST, UTC-5)
    events = [
        call(account, february, key="first-instant"),
        call(account, february - timedelta(seconds=1), key="closed-month"),
        call(account, datetime(1, 1, 1, tzinfo=UTC), key="year-one"),
    ]
    with pytest.raises(UsageRejected) as rejected:
        await record_usage(session, REPORTER, events, now=NOW)

    closed = (
        "must not be before 2026-02-01T05:00:00+00:00, the start of the previous month in the account's time"
        " zone; earlier months are closed"
    )
    assert [(p.index, p.field, p.message) for p in rejected.value.problems] == [
        (1, "occurred_at", closed),
        (2, "occurred_at", closed),
    ]
    assert (await record_usage(session, REPORTER, events[:1], now=NOW)).recorded == 1
    # In January the previous month is last year's December.
    december = datetime(2025, 12, 1, 5, tzinfo=UTC)
    january = datetime(2026, 1, 10, tzinfo=UTC)
    assert (await record_usage(session, REPORTER, [call(account, december)], now=january)).recorded == 1


async def test_an_account_outside_the_principals_scope_reads_as_unknown(session: AsyncSession) -> None:
    mine, theirs = await create_account(session), await create_account(session)
    member = Principal(kind=PrincipalKind.MEMBER, api_key_id=0, account_id=mine.id)
    with pytest.raises(UsageRejected) as rejected:
        await record_usage(session, member, [call(theirs, EARLIER)], now=NOW)
    assert [(p.field, p.message) for p in rejected.value.problems] == [("account_id", "account not found")]


async def test_funding_state_follows_the_balance(session: AsyncSession) -> None:
    rich, low, broke = [await create_account(session) for _ in range(3)]
    for account, credit in ((rich, 5_000), (low, 500)):
        assert account.id is not None
        await ledger.post(
            session,
            SYSTEM,
            account_id=account.id,
            kind=TransactionKind.ADJUSTMENT,
            amount_minor=credit,
            description="credit",
            idempotency_key="credit",
        )
    await record_usage(session, REPORTER, [call(broke, EARLIER)], now=NOW)
    ids = [a.id or 0 for a in (rich, low, broke)]
    states = await funding_states(session, ADMIN, ids, default_low_minor=1_000)
    assert [states[i] for i in ids] == [FundingState.OK, FundingState.LOW, FundingState.DEPLETED]


async def full_batch_statements(
    session: AsyncSession, engine: AsyncEngine, accounts: list[Account]
) -> list[str]:
    """The statements recording 1,000 events, a third of each category, spread over `accounts`."""
    plans = [await create_lead_plan(session, account) for account in accounts]
    makers = (
        lambda i: lead(accounts[i % len(accounts)], plans[i % len(accounts)], EARLIER),
        lambda i: call(accounts[i % len(accounts)], EARLIER),
        lambda i: ai_request(accounts[i % len(accounts)], EARLIER),
    )
    events = [makers[i % 3](i) for i in range(MAX_EVENTS_PER_BATCH)]
    with recorded_statements(engine) as statements:
        result = await record_usage(session, REPORTER, events, now=NOW)
    assert result.recorded == MAX_EVENTS_PER_BATCH
    return statements


async def test_a_full_batch_costs_a_handful_of_statements_however_many_accounts(
    session: AsyncSession, engine: AsyncEngine
) -> None:
    """1,000 events over one account and over 100: the count grows neither with events nor with accounts."""
    one = await create_account(session)
    hundred = [await create_account(session) for _ in range(100)]
    alone = await full_batch_statements(session, engine, [one])
    spread = await full_batch_statements(session, engine, hundred)

    # lock + plans + duplicates + ledger (lock, keys, entries, balances) + events + rollups + the plans' months
    # + auto-recharge settings
    assert len(alone) == len(spread) == 11, spread
    stored = (await session.exec(select(Transaction).where(col(Transaction.account_id) == one.id))).all()
    assert sum(t.amount_minor for t in stored) == one.balance_minor == -(334 * 2_500 + 333 * 45 + 333 * 3)
    for account in hundred:
        assert account.balance_minor == await checked_balance(session, account)
