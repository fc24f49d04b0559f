"""The benchmark's data on PostgreSQL, built in bulk (INSERT ... SELECT generate_series, COPY) and reused.

- the Billing page's account ("Nordlicht Solar GmbH", EUR, Germany): 1,000,000 ledger entries over about two
  years, 1,000,000 usage events this month and their monthly rollup, as `record_usage` would have left it;
- an account with 10,000 usage events this month (the usage overview at a small volume);
- a partner with 1,000 accounts, each with a balance (and the top-up behind it), a company profile (nine in
  ten), one or two cards, a lead plan and this month's usage rollup;
- an account to record usage into, so the recording benchmark never changes the data above;
- a key for each caller. Keys are stored hashed, so the raw ones are kept in `bench_marker` with the ids: this
  database holds benchmark data only.

`bench_marker` also records the data version and the month the usage was generated in: the data is rebuilt
when either changed (the Billing page shows the current month's usage).
"""

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, make_url
from sqlmodel import SQLModel

import models  # noqa: F401  (every table in the metadata, to empty them before a rebuild)
from bench.config import asyncpg_dsn
from billing.db import create_engine, session_factory, unit_of_work
from billing.keys import service as auth
from billing.months import month_of
from models import PrincipalKind

DATA_VERSION = "1"
BILLING_ACCOUNT_TIME_ZONE = "Europe/Berlin"
LEDGER_ENTRIES = 1_000_000
USAGE_EVENTS = 1_000_000
SMALL_USAGE_EVENTS = 10_000
PARTNER_ACCOUNTS = 1_000
# The partner's accounts: (country, time zone), in turn.
PARTNER_PLACES = [("DE", "Europe/Berlin"), ("FR", "Europe/Paris"), ("US", "America/New_York"), ("NL", "UTC")]
USD_PER_EUR = ["1.0812", "1.0794", "1.0831", "1.0767", "1.0803"]  # the last five business days


@dataclass(frozen=True)
class BenchData:
    month: str
    billing_account_id: int
    small_account_id: int
    recording_account_id: int
    recording_plan_id: int
    member_key: str
    small_member_key: str
    partner_key: str
    reporter_key: str


def current_month() -> str:
    return str(month_of(datetime.now(UTC), BILLING_ACCOUNT_TIME_ZONE))


async def ensure_data(url: str) -> BenchData:
    """The data, built first if the database lacks it (a few minutes); migrations are applied either way."""
    await _create_database(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_migrate)
    finally:
        await engine.dispose()
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS bench_marker (version text, month text, data jsonb)"
        )
        row = await connection.fetchrow("SELECT version, month, data FROM bench_marker")
        if row is not None and row["version"] == DATA_VERSION and row["month"] == current_month():
            return BenchData(**json.loads(row["data"]))
        print("building the benchmark data (a few minutes) ...", flush=True)
        tables = ", ".join(f'"{table.name}"' for table in SQLModel.metadata.sorted_tables)
        await connection.execute(f"TRUNCATE bench_marker, {tables} RESTART IDENTITY CASCADE")
        data = await _build(connection, url)
        await connection.execute(
            "INSERT INTO bench_marker VALUES ($1, $2, $3)", DATA_VERSION, data.month, json.dumps(asdict(data))
        )
        await connection.execute("VACUUM ANALYZE")
        return data
    finally:
        await connection.close()


async def _create_database(url: str) -> None:
    parsed = make_url(url)
    admin = await asyncpg.connect(
        host=parsed.host, port=parsed.port or 5432, user=parsed.username, database="postgres"
    )
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", parsed.database)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{parsed.database}"')
    finally:
        await admin.close()


def _migrate(connection: Connection) -> None:
    config = Config("alembic.ini")
    config.attributes["configure_logger"] = False
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def _build(connection: asyncpg.Connection, url: str) -> BenchData:
    now = datetime.now(UTC)
    today = now.date()
    for age, rate in enumerate(reversed(USD_PER_EUR)):
        await connection.execute(
            "INSERT INTO fx_rate (currency, rate_date, per_eur) VALUES ('USD', $1, $2)",
            today - timedelta(days=age),
            rate,
        )
    billing_account, billing_plan = await _member_account(connection, "Nordlicht Solar GmbH", "EUR", now)
    await _ledger(connection, billing_account, now)
    await _usage(connection, billing_account, billing_plan, USAGE_EVENTS, now)
    small_account, small_plan = await _member_account(connection, "Kleinkram GmbH", "EUR", now)
    await _usage(connection, small_account, small_plan, SMALL_USAGE_EVENTS, now)
    partner_accounts = await _partner_accounts(connection, now)
    recording_account, recording_plan = await _member_account(connection, "Usage Recorder Inc", "USD", now)

    engine = create_engine(url)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            _, member_key = await auth.create_api_key(
                session, kind=PrincipalKind.MEMBER, name="bench member", account_id=billing_account
            )
            _, small_member_key = await auth.create_api_key(
                session, kind=PrincipalKind.MEMBER, name="bench small member", account_id=small_account
            )
            _, partner_key = await auth.create_api_key(
                session, kind=PrincipalKind.PARTNER, name="bench partner", partner_id=partner_accounts
            )
            _, reporter_key = await auth.create_api_key(
                session, kind=PrincipalKind.USAGE_REPORTER, name="bench reporter"
            )
    finally:
        await engine.dispose()
    return BenchData(
        month=current_month(),
        billing_account_id=billing_account,
        small_account_id=small_account,
        recording_account_id=recording_account,
        recording_plan_id=recording_plan,
        member_key=member_key,
        small_member_key=small_member_key,
        partner_key=partner_key,
        reporter_key=reporter_key,
    )


async def _member_account(
    connection: asyncpg.Connection, name: str, currency: str, now: datetime
) -> tuple[int, int]:
    """An account with a complete company profile, two cards and two lead plans (one paused): its id and the
    active plan's."""
    account_id: int = await connection.fetchval(
        "INSERT INTO account (name, currency, country, time_zone, balance_minor, created_at)"
        " VALUES ($1, $2, 'DE', $3, 0, $4) RETURNING id",
        name,
        currency,
        BILLING_ACCOUNT_TIME_ZONE,
        now - timedelta(days=800),
    )
    await connection.execute(
        "INSERT INTO company (account_id, legal_name, registration_number, vat_id, phone, address_line1, city,"
        " postal_code, country, updated_at)"
        " VALUES ($1, $2, 'HRB 123456', 'DE123456789', '+4930123456', 'Unter den Linden 1', 'Berlin', '10117',"
        " 'DE', $3)",
        account_id,
        name,
        now,
    )
    await connection.execute(
        "INSERT INTO payment_method (account_id, stripe_payment_method_id, brand, last4, exp_month, exp_year,"
        " is_default, created_at)"
        " VALUES ($1, 'pm_bench_' || $1::integer || '_1', 'visa', '4242', 12, 2030, true, $2),"
        " ($1, 'pm_bench_' || $1::integer || '_2', 'mastercard', '4444', 6, 2029, false, $2)",
        account_id,
        now,
    )
    plan_id: int = await connection.fetchval(
        "INSERT INTO lead_plan_subscription (account_id, name, monthly_budget_minor, price_per_lead_minor,"
        " currency, status, started_at, created_at)"
        " VALUES ($1, 'Solar leads Bavaria', 1000000000, 2500, $2, 'active', $3, $3) RETURNING id",
        account_id,
        currency,
        now - timedelta(days=400),
    )
    await connection.execute(
        "INSERT INTO lead_plan_subscription (account_id, name, monthly_budget_minor, price_per_lead_minor,"
        " currency, status, started_at, paused_at, created_at)"
        " VALUES ($1, 'Heat pump leads', 150000, 1800, $2, 'paused', $3, $3, $3)",
        account_id,
        currency,
        now - timedelta(days=300),
    )
    return account_id, plan_id


async def _ledger(connection: asyncpg.Connection, account_id: int, now: datetime) -> None:
    """A minute apart, newest an hour ago: usage debits, and a top-up every 50th entry (a tenth of them failed);
    the stored balance is the sum of the succeeded entries, as the ledger keeps it."""
    await connection.execute(
        "INSERT INTO ledger_transaction (account_id, kind, status, amount_minor, currency, description,"
        " idempotency_key, created_at, settled_at)"
        " SELECT $1, e.kind, e.status, e.amount, 'EUR', e.description, 'bench-' || n, e.at,"
        "  CASE WHEN e.status = 'pending' THEN NULL ELSE e.at END"
        " FROM generate_series(1, $2) AS n, LATERAL (SELECT"
        "  CASE WHEN n % 50 = 0 THEN 'top_up' WHEN n % 3 = 0 THEN 'usage_leads'"
        "   WHEN n % 3 = 1 THEN 'usage_calls' ELSE 'usage_ai_agent' END AS kind,"
        "  CASE WHEN n % 500 = 0 THEN 'failed' WHEN n % 997 = 0 THEN 'pending' ELSE 'succeeded' END AS status,"
        "  CASE WHEN n % 50 = 0 THEN 250000 WHEN n % 3 = 0 THEN -2500 * (1 + n % 4)"
        "   WHEN n % 3 = 1 THEN -45 * (1 + n % 30) ELSE -3 * (1 + n % 100) END AS amount,"
        "  CASE WHEN n % 50 = 0 THEN 'Top-up' WHEN n % 3 = 0 THEN 'Leads: ' || (1 + n % 4) || ' delivered'"
        "   WHEN n % 3 = 1 THEN 'Calls: ' || (1 + n % 30) || ' minutes'"
        "   ELSE 'AI agent: ' || (1 + n % 100) || ' requests' END AS description,"
        "  $3::timestamptz - ($2 - n) * interval '1 minute' AS at) AS e",
        account_id,
        LEDGER_ENTRIES,
        now - timedelta(hours=1),
    )
    await connection.execute(
        "UPDATE account SET balance_minor = (SELECT sum(amount_minor) FROM ledger_transaction"
        " WHERE account_id = $1 AND status = 'succeeded') WHERE id = $1",
        account_id,
    )


async def _usage(
    connection: asyncpg.Connection, account_id: int, plan_id: int, count: int, now: datetime
) -> None:
    """`count` events this month (a third of each category), then the month's rollup summed from them, the
    numbers `record_usage` would have accumulated."""
    start, _ = month_of(now, BILLING_ACCOUNT_TIME_ZONE).bounds(BILLING_ACCOUNT_TIME_ZONE)
    span = max(1, int((now - start).total_seconds()) - 60)
    await connection.execute(
        "INSERT INTO usage_event (account_id, external_id, category, occurred_at, cost_minor, currency,"
        " lead_plan_id, duration_seconds, input_tokens, output_tokens, recorded_at)"
        " SELECT $1, 'bulk-' || n, (ARRAY['lead', 'call', 'ai_agent'])[1 + n % 3],"
        "  $2::timestamptz + (n % $3) * interval '1 second',"
        "  CASE n % 3 WHEN 0 THEN 2500 WHEN 1 THEN 45 * (1 + n % 10) ELSE 3 END, 'EUR',"
        "  CASE WHEN n % 3 = 0 THEN $4::integer END, CASE WHEN n % 3 = 1 THEN 30 + n % 300 END,"
        "  CASE WHEN n % 3 = 2 THEN 900 + n % 50 END, CASE WHEN n % 3 = 2 THEN 300 END, $5"
        " FROM generate_series(1, $6) AS n",
        account_id,
        start,
        span,
        plan_id,
        now,
        count,
    )
    await connection.execute(
        "INSERT INTO usage_rollup (account_id, month, lead_spent_minor, leads, call_spent_minor, calls,"
        " call_seconds, ai_cost_minor, ai_requests, ai_input_tokens, ai_output_tokens)"
        " SELECT $1, $2,"
        "  coalesce(sum(cost_minor) FILTER (WHERE category = 'lead'), 0), count(*) FILTER (WHERE category = 'lead'),"
        "  coalesce(sum(cost_minor) FILTER (WHERE category = 'call'), 0), count(*) FILTER (WHERE category = 'call'),"
        "  coalesce(sum(duration_seconds), 0),"
        "  coalesce(sum(cost_minor) FILTER (WHERE category = 'ai_agent'), 0),"
        "  count(*) FILTER (WHERE category = 'ai_agent'),"
        "  coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0)"
        " FROM usage_event WHERE account_id = $1",
        account_id,
        str(month_of(now, BILLING_ACCOUNT_TIME_ZONE)),
    )


async def _partner_accounts(connection: asyncpg.Connection, now: datetime) -> int:
    """The partner and its accounts; returns the partner's id."""
    partner_id: int = await connection.fetchval(
        "INSERT INTO partner (name, created_at) VALUES ('Bench Agency', $1) RETURNING id", now
    )
    rows = await connection.fetch(
        "INSERT INTO account (name, currency, country, time_zone, balance_minor, created_at)"
        " SELECT 'Partner client ' || n, CASE WHEN n % 2 = 1 THEN 'EUR' ELSE 'USD' END,"
        "  ($2::text[])[1 + n % $4], ($3::text[])[1 + n % $4], n * 7919 % 5000000,"
        "  $5::timestamptz - (n % 365) * interval '1 day'"
        " FROM generate_series(1, $1) AS n RETURNING id, currency, country, time_zone",
        PARTNER_ACCOUNTS,
        [country for country, _ in PARTNER_PLACES],
        [time_zone for _, time_zone in PARTNER_PLACES],
        len(PARTNER_PLACES),
        now,
    )
    accounts = [(row["id"], row["currency"], row["country"], row["time_zone"]) for row in rows]
    ids = [account_id for account_id, *_ in accounts]
    await connection.copy_records_to_table(
        "partner_account", records=[(partner_id, account_id) for account_id in ids]
    )
    await connection.execute(
        "INSERT INTO ledger_transaction (account_id, kind, status, amount_minor, currency, description,"
        " idempotency_key, created_at, settled_at)"
        " SELECT id, 'top_up', 'succeeded', balance_minor, currency, 'Top-up', 'bench-top-up', created_at,"
        " created_at FROM account WHERE id = ANY($1)",
        ids,
    )
    await connection.copy_records_to_table(
        "company",
        columns=[
            "account_id",
            "legal_name",
            "registration_number",
            "phone",
            "address_line1",
            "city",
            "postal_code",
            "country",
            "updated_at",
        ],
        records=[
            (
                account_id,
                f"Client {account_id} GmbH",
                f"HRB {account_id}",
                f"+49301{account_id:05d}",
                f"Hauptstraße {account_id}",
                "Berlin",
                "10117",
                country,
                now,
            )
            for account_id, _, country, _ in accounts
            if account_id % 10
        ],
    )
    await connection.copy_records_to_table(
        "payment_method",
        columns=[
            "account_id",
            "stripe_payment_method_id",
            "brand",
            "last4",
            "exp_month",
            "exp_year",
            "is_default",
            "created_at",
        ],
        records=[
            (
                account_id,
                f"pm_bench_{account_id}_{card}",
                ("visa", "mastercard")[card],
                f"{account_id % 10_000:04d}",
                1 + account_id % 12,
                2028 + card,
                card == 0,
                now + timedelta(seconds=card),
            )
            for account_id in ids
            for card in range(1 + account_id % 2)
        ],
    )
    await connection.copy_records_to_table(
        "lead_plan_subscription",
        columns=[
            "account_id",
            "name",
            "monthly_budget_minor",
            "price_per_lead_minor",
            "currency",
            "status",
            "started_at",
            "created_at",
        ],
        records=[
            (account_id, "Leads", 100_000 + account_id % 10 * 10_000, 2_500, currency, "active", now, now)
            for account_id, currency, _, _ in accounts
        ],
    )
    await connection.copy_records_to_table(
        "usage_rollup",
        columns=[
            "account_id",
            "month",
            "lead_spent_minor",
            "leads",
            "call_spent_minor",
            "calls",
            "call_seconds",
            "ai_cost_minor",
            "ai_requests",
            "ai_input_tokens",
            "ai_output_tokens",
        ],
        records=[
            (
                account_id,
                str(month_of(now, time_zone)),
                account_id % 40 * 2_500,
                account_id % 40,
                account_id % 300 * 45,
                account_id % 300,
                account_id % 300 * 97,
                account_id % 500 * 3,
                account_id % 500,
                account_id % 500 * 900,
                account_id % 500 * 300,
            )
            for account_id, _, _, time_zone in accounts
        ],
    )
    return partner_id
