"""Engine and session plumbing. Services take an AsyncSession and never commit; the caller's scope does.

A session holds a pooled connection only while its block runs: a request, the worker or a webhook opens one
short unit of work per step and never keeps a connection across a network call (Stripe, a webhook receiver).
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.config import Settings
from billing.data_version import service as data_version
from billing.events import service as events

SessionFactory = async_sessionmaker[AsyncSession]
T = TypeVar("T")

# Execution option naming how a SQLite transaction begins (see `create_engine`).
SQLITE_BEGIN = "sqlite_begin"


class DatabaseBusy(Exception):
    """No connection (pool exhausted) or no write lock (SQLite) within the configured wait: shed the request."""


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    pool_timeout: float = 5.0,
    sqlite_busy_timeout: float = 10.0,
    statement_timeout: float | None = None,
    **kwargs: Any,
) -> AsyncEngine:
    if not is_sqlite(url):
        if statement_timeout is not None:
            # PostgreSQL ends a statement running longer than this itself (SQLite has no such setting).
            milliseconds = str(max(1, round(statement_timeout * 1000)))
            kwargs["connect_args"] = {"server_settings": {"statement_timeout": milliseconds}}
        # No pre-ping (a round trip per checkout): a connection the server dropped is invalidated on its
        # first error and replaced, and recycling keeps them from going stale behind idle-timeout proxies.
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=1800,
            **kwargs,
        )
        data_version.track(engine)  # every write raises the data versions of what it wrote (response cache)
        return engine
    engine = create_async_engine(url, connect_args={"timeout": sqlite_busy_timeout}, **kwargs)
    data_version.track(engine)
    busy_ms = int(sqlite_busy_timeout * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.close()
        # The sqlite3 driver opens transactions lazily and on its own terms, which breaks SAVEPOINT
        # nesting (a savepoint would become the real transaction); SQLAlchemy takes over BEGIN instead.
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _sqlite_begin(connection: Any) -> None:
        # Writers take the write lock up front (waiting up to the busy timeout): a deferred transaction that
        # reads and then writes fails at once with "database is locked" when another writer went first,
        # because SQLite cannot upgrade its snapshot. Reads ask for DEFERRED and stay concurrent (WAL).
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def is_busy(error: BaseException) -> bool:
    """A failure that means "too much load now, try again shortly", not a fault of the request."""
    if isinstance(error, DatabaseBusy | PoolTimeout):
        return True
    return isinstance(error, OperationalError) and "database is locked" in str(error.orig)


@asynccontextmanager
async def _busy_as_typed() -> AsyncIterator[None]:
    try:
        yield
    except (PoolTimeout, OperationalError) as error:
        if is_busy(error):
            raise DatabaseBusy(str(error)) from error
        raise


@asynccontextmanager
async def unit_of_work(factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    """One database transaction: committed when the block succeeds, rolled back when it raises."""
    async with _busy_as_typed(), factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


@asynccontextmanager
async def read_session(factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    """A session that only reads.

    On PostgreSQL its statements run without a transaction around them (autocommit): at READ COMMITTED each
    statement sees what was committed when it started either way, and BEGIN and ROLLBACK are two round trips
    that cost about 0.2 ms of CPU, a twentieth of a Billing page. (A session bound to a connection that is
    already in a transaction, as in the tests, reads inside it.) On SQLite it is a deferred transaction, which
    takes no write lock, so reads run beside a writer.
    """
    async with _busy_as_typed(), factory() as session:
        options: dict[str, str] = {}
        if session.get_bind().dialect.name == "sqlite":
            options[SQLITE_BEGIN] = "DEFERRED"
        elif isinstance(session.bind, AsyncEngine):
            options["isolation_level"] = "AUTOCOMMIT"
        await session.connection(execution_options=options)
        yield session


class SharedRead:
    """One read session (`read_session`), opened by the first who asks for it and shared until `close`: a
    request's key check and its query's reads (opening and closing a session costs about 0.14 ms of CPU, a
    thirtieth of a Billing page). Never kept across a network call."""

    def __init__(self, factory: SessionFactory) -> None:
        self.factory = factory
        self._open: tuple[AsyncSession, AsyncExitStack] | None = None

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """`work` in the session; a failure ends it as `read_session` ends on that error (a database error
        becomes DatabaseBusy when it means load), and the next `run` opens a fresh one."""
        if self._open is None:
            stack = AsyncExitStack()
            self._open = (await stack.enter_async_context(read_session(self.factory)), stack)
        try:
            return await work(self._open[0])
        except BaseException as error:
            await self.close(error)
            raise

    async def close(self, error: BaseException | None = None) -> None:
        """Give the connection back (ended as `read_session` ends on `error`, when given)."""
        if self._open is None:
            return
        _, stack = self._open
        self._open = None
        if error is None:
            await stack.aclose()
        else:
            await stack.__aexit__(type(error), error, error.__traceback__)


def engine_from_settings(settings: Settings) -> AsyncEngine:
    return create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        sqlite_busy_timeout=settings.sqlite_busy_timeout_seconds,
        statement_timeout=settings.db_statement_timeout_seconds,
        # What the commit needs to record funding-state events (see billing/events/service.py).
        execution_options=events.engine_options(settings),
    )
