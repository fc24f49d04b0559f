"""Prebuilt read statements run straight on asyncpg, skipping SQLAlchemy's per-execution work.

A repository's statement built once (cached) is compiled once per dialect here into asyncpg's SQL (`$1..$n`), the
order of its parameters, their bind processors and its columns' result processors; each run binds the values and
calls the driver's `fetch` (asyncpg prepares and caches the statement per connection): about 56 µs of CPU a
statement against 112 µs through `AsyncConnection.execute` (one core, issue 10). What SQLAlchemy's path does
around a statement still happens: it runs on the session's connection, inside the adapter's transaction (begun
as SQLAlchemy would begin it) under the adapter's lock; cursor events fire (statement counts, tracing spans);
and an error is translated, typed and invalidates a dropped connection exactly as SQLAlchemy would.
SQLite, and any statement this cannot reproduce, run through SQLAlchemy.
"""

from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Executable, Select
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any]


class _Execution:
    """What cursor and error events are given as the execution context: a place for their state (a tracing span)
    and the two members SQLAlchemy's error handling reads of it."""

    executemany = False

    def handle_dbapi_exception(self, error: BaseException) -> None:
        pass


@dataclass(frozen=True)
class _Plan:
    sql: str
    names: tuple[str, ...]  # the parameters in `$n` order
    defaults: Mapping[str, Any]  # values bound in the statement itself
    binds: tuple[Processor | None, ...]  # per parameter
    results: tuple[tuple[int, Processor], ...]  # (column, processor) for the columns that have one
    # Rows as SQLAlchemy's are used: tuples whose fields are also attributes (`row.account_id`).
    row: Callable[[Iterable[Any]], tuple[Any, ...]]

    def arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        values = {**self.defaults, **parameters}
        return [
            value if bind is None else bind(value)
            for bind, value in zip(self.binds, (values[name] for name in self.names), strict=True)
        ]

    def rows(self, records: Sequence[Any]) -> list[Any]:
        make = self.row
        if not self.results:
            return [make(record) for record in records]
        rows = []
        for record in records:
            values = list(record)
            for index, process in self.results:
                values[index] = process(values[index])
            rows.append(make(values))
        return rows


@cache  # keyed on the statement object, built once by its repository, and the engine's dialect
def _plan(statement: Executable, dialect: Dialect) -> _Plan | None:
    if not isinstance(statement, Select):
        return None  # reads only: a write's events (data versions) hang on SQLAlchemy's execute
    compiled = statement.compile(dialect=dialect)
    if not isinstance(compiled, SQLCompiler) or compiled.positiontup is None:
        return None
    # Expanding (IN) and literal-execute parameters are rendered per execution: SQLAlchemy's job.
    if any(bind.expanding or bind.literal_execute for bind in compiled.binds.values()):
        return None
    try:
        results = tuple(
            (index, process)
            for index, column in enumerate(compiled._result_columns)
            if (process := column.type._cached_result_processor(dialect, None)) is not None
        )
    except (SQLAlchemyError, TypeError):
        return None  # a processor that needs the driver's column type (asyncpg's Numeric): SQLAlchemy's job
    bind_processors = compiled._bind_processors
    names = tuple(compiled.positiontup)
    return _Plan(
        sql=compiled.string,
        names=names,
        defaults={name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required},
        binds=tuple(bind_processors.get(name) for name in names),  # type: ignore[misc]  # a tuple of them means several
        results=results,
        row=namedtuple("Row", [column.keyname for column in compiled._result_columns], rename=True)._make,  # type: ignore[attr-defined]  # a dynamic namedtuple
    )


async def rows(
    connection: AsyncConnection, statement: Executable, parameters: Mapping[str, Any]
) -> Sequence[Any]:
    """The rows of a read statement built once: tuples, with each column also an attribute. On asyncpg run on
    the driver itself; through SQLAlchemy on SQLite, and for a statement this cannot reproduce."""
    plan = _plan(statement, connection.dialect) if connection.dialect.driver == "asyncpg" else None
    if plan is None:
        return (await connection.execute(statement, dict(parameters))).all()
    return await _fetch(connection, plan, parameters)


async def _fetch(connection: AsyncConnection, plan: _Plan, parameters: Mapping[str, Any]) -> list[Any]:
    sync = connection.sync_connection
    assert sync is not None
    adapter: Any = (await connection.get_raw_connection()).dbapi_connection  # AsyncAdapt_asyncpg_connection
    sql, arguments = plan.sql, plan.arguments(parameters)
    execution = _Execution()
    cursor_events = bool(sync.dispatch.before_cursor_execute or sync.dispatch.after_cursor_execute)
    if cursor_events:
        for before in sync.dispatch.before_cursor_execute:
            sql, arguments = before(sync, None, sql, arguments, execution, False)
    try:
        # What the adapter's cursor does before it runs a statement, so the transaction and the connection's
        # state are the ones SQLAlchemy's path would leave.
        async with adapter._execute_mutex:
            if adapter._transaction is None:
                await adapter._start_transaction()
            try:
                records = await adapter._connection.fetch(sql, *arguments)
            except Exception as error:
                adapter._handle_exception(error)  # raises the DBAPI error SQLAlchemy's path gets
    except Exception as error:
        await connection.run_sync(_raise_as_sqlalchemy, error, sql, arguments, execution)
        raise  # not reached: the line above raises
    if cursor_events:
        for after in sync.dispatch.after_cursor_execute:
            after(sync, None, sql, arguments, execution, False)
    return plan.rows(records)


def _raise_as_sqlalchemy(
    connection: Connection, error: Exception, sql: str, arguments: list[Any], execution: _Execution
) -> None:
    """SQLAlchemy's own handling of a driver error: `handle_error` events, the typed `DBAPIError` subclass
    (OperationalError, ...), and a connection the server dropped invalidated instead of returned to the pool."""
    connection._handle_dbapi_exception(error, sql, tuple(arguments), None, execution)  # type: ignore[arg-type]
