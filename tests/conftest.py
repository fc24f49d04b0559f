"""Test databases: migrated once per session, each test inside an outer transaction that is rolled back.

Every test that asks for `session` runs on SQLite and on PostgreSQL. PostgreSQL is skipped with a reason when it
cannot be reached, unless REQUIRE_POSTGRES=1 (CI), where that is a failure.
"""

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

import models  # noqa: F401  (every table in the metadata, for TRUNCATE)
from billing.config import Environment, Settings
from billing.db import SessionFactory, create_engine
from tests.support.factories import savepoint_sessions
from tests.support.gateway import open_gateway

ROOT = Path(__file__).resolve().parent.parent
# A database of its own per test run, so parallel runs on one server never meet.
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", f"postgresql+asyncpg://postgres@127.0.0.1:5432/billing_test_{os.getpid()}"
)
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"
pytest_plugins = ["tests.support.stripe_server"]  # localstripe and the Stripe gateway (issue 3)


def alembic_config() -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logger"] = False
    return config


def migrate(connection: Connection, revision: str = "head") -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def postgres_admin(url: str) -> asyncpg.Connection:
    parsed = make_url(url)
    try:
        admin = await asyncpg.connect(
            host=parsed.host, port=parsed.port or 5432, user=parsed.username, database="postgres", timeout=5
        )
    except (OSError, asyncpg.PostgresError) as error:
        message = f"PostgreSQL at {parsed.host}:{parsed.port} unreachable: {error}"
        if REQUIRE_POSTGRES:
            pytest.fail(message)
        pytest.skip(message)
    return admin


async def recreate_postgres_database(url: str, *, create: bool = True) -> None:
    admin = await postgres_admin(url)
    database = make_url(url).database
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        if create:
            await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()


@asynccontextmanager
async def migrated_database(backend: str, name: str, *, revision: str = "head") -> AsyncIterator[str]:
    """The URL of a database of its own (`name` tells it apart) migrated to `revision`, for tests that run real
    processes or their own engine, or upgrade it themselves; a PostgreSQL one is dropped afterwards."""
    if backend == "postgresql":
        base = make_url(POSTGRES_URL)
        url = base.set(database=f"{base.database}_{name}").render_as_string(hide_password=False)
        await recreate_postgres_database(url)
    else:
        url = f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix=f'billing-{name}-')}/billing.db"
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(migrate, revision)
    finally:
        await engine.dispose()
    try:
        yield url
    finally:
        if backend == "postgresql":
            await recreate_postgres_database(url, create=False)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    if request.param == "postgresql":
        await recreate_postgres_database(POSTGRES_URL)
        url = POSTGRES_URL
    else:
        directory = tempfile.mkdtemp(prefix="billing-test-")
        url = f"sqlite+aiosqlite:///{directory}/test.db"
    engine = create_engine(
        url, pool_timeout=60
    )  # concurrency tests queue on purpose; shedding has its own test
    async with engine.begin() as connection:
        await connection.run_sync(migrate)
    yield engine
    await engine.dispose()
    if request.param == "postgresql":
        await recreate_postgres_database(POSTGRES_URL, create=False)


@pytest.fixture
def backend(engine: AsyncEngine) -> str:
    return engine.dialect.name


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as connection:
        outer = await connection.begin()
        yield connection
        await outer.rollback()


@pytest.fixture
def session_factory(connection: AsyncConnection) -> SessionFactory:
    """Sessions whose commits only release a savepoint inside the test's rolled-back transaction."""
    return savepoint_sessions(connection)


@pytest.fixture
async def session(session_factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    async with session_factory() as session:
        yield session


@pytest.fixture
async def committing_engine(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """For concurrency tests that need real commits across connections: PostgreSQL only, emptied afterwards."""
    if engine.dialect.name != "postgresql":
        pytest.skip("concurrency and locking are proved on PostgreSQL; SQLite serialises writers")
    yield engine
    tables = ", ".join(f'"{table.name}"' for table in SQLModel.metadata.sorted_tables)
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def settings() -> Settings:
    # No embedded worker: tests drive the recharge engine themselves, pass by pass.
    return Settings(environment=Environment.TEST, stripe_secret_key="sk_test_unused", embedded_worker=False)


@pytest.fixture
async def client(settings: Settings, session_factory: SessionFactory) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the app, whose requests share the test's rolled-back transaction."""
    async with open_gateway(settings, session_factory) as client:
        yield client
