"""Data versions: every transaction that writes raises, in the same transaction, the counters of what it wrote.

`track(engine)` (billing/db.py does it for every engine) watches every statement the engine's connections run:
- ORM flushes, through the mapper events: each inserted, updated or deleted object's account (its
  `account_id`, or its `id` for an account, and the account it moved from);
- Core INSERT / UPDATE / DELETE, whoever runs them (a service, a repository, the commit hook writing domain
  events, the worker, a Stripe webhook): the accounts named by the rows' values, or by the WHERE clause's
  `account_id = x`, `account_id IN (...)` or `= ANY(...)`;
- textual SQL that writes (`text()`, `exec_driver_sql`), which names nothing we can read.
Right before the transaction commits (or a savepoint is released: the tests' sessions), one upsert raises
the counters (billing/data_version/repository.py): the touched accounts' own, and a shared counter per table
for writes no single account owns (FX rates, partners, grants, partner and admin keys) or whose accounts the
statement does not name (an UPDATE by id): those change the key of every cached answer. A transaction that
writes nothing raises nothing; one that rolls back raises nothing either (the upsert is part of it).

So a cached answer keyed by `current(...)` (server.py) can never be stale: whatever changed what it was read
from committed together with a higher counter, in whichever process wrote it.
"""

import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, Column, Connection, Engine, Table, event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapper, PassiveFlag, attributes
from sqlalchemy.sql import operators
from sqlalchemy.sql.dml import Delete, Insert, Update, UpdateBase
from sqlalchemy.sql.elements import (
    BinaryExpression,
    BooleanClauseList,
    ClauseElement,
    CollectionAggregate,
    Grouping,
    TextClause,
)
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.data_version.repository import DataVersion, DataVersionRepository, raise_versions
from billing.keys.service import Principal
from billing.scope import Scope
from models import AccountDataVersion, SharedDataVersion

# connection.info keys (the DBAPI connection's: cleared when a transaction begins, consumed when it commits).
_TOUCHED = "billing.data_version.service.touched"
_FLUSHING = "billing.data_version.service.flushing"
_VERSION_TABLES = frozenset({AccountDataVersion.__tablename__, SharedDataVersion.__tablename__})
# Inserting or deleting a grant changes which accounts a partner sees, not only an account's data: the partner's
# key is an aggregate over its accounts' counters, which a changed set could repeat. (An admin sees every
# counter ever made, and they only grow, so new accounts need nothing more.)
_MEMBERSHIP_TABLES = frozenset({"partner_account"})
# The counter a textual write raises: it names no table we can read.
TEXTUAL_SQL = "sql"
_WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE|TRUNCATE|MERGE|REPLACE)\b", re.IGNORECASE)

_tracked: "weakref.WeakSet[Engine]" = weakref.WeakSet()


@dataclass
class Touched:
    """What a transaction wrote so far: accounts, and tables whose writes belong to no single account."""

    accounts: set[int] = field(default_factory=set)
    tables: set[str] = field(default_factory=set)


async def current(session: AsyncSession, principal: Principal) -> DataVersion:
    """The version of everything `principal` may see (one statement)."""
    return await DataVersionRepository(session, Scope.of(principal)).current()


def period(now: datetime) -> str:
    """The part of a cache key that moves with the clock. Answers depend on the current month in the account's
    time zone (the usage overview); time zones are UTC-12 to UTC+14 in steps of 15 minutes, so every zone's
    month starts at a quarter hour within 14 hours before to 12 hours after the UTC one. Outside those hours
    the UTC month is the key; inside, the UTC quarter hour."""
    now = now.astimezone(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    if now < month_start + timedelta(hours=12) or now >= next_month - timedelta(hours=14):
        return now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0).isoformat()
    return f"{now:%Y-%m}"


# --------------------------------------------------------------------------------------------- tracking


def track(engine: AsyncEngine | Engine) -> None:
    """Raise data versions for every write made through this engine's connections."""
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    if sync_engine in _tracked:
        return
    _tracked.add(sync_engine)
    event.listen(sync_engine, "begin", _forget)
    event.listen(sync_engine, "rollback", _forget)
    event.listen(sync_engine, "before_execute", _statement)
    event.listen(sync_engine, "commit", _raise)
    event.listen(sync_engine, "release_savepoint", lambda connection, name, context: _raise(connection))
    # A flush that failed inside a savepoint never reached its after_* events. (What the savepoint wrote stays
    # in `Touched`: raising a counter too many is harmless.)
    event.listen(
        sync_engine, "rollback_savepoint", lambda connection, name, context: _flush_ended(connection)
    )


def _touched(connection: Connection) -> Touched:
    touched: Touched = connection.info.setdefault(_TOUCHED, Touched())
    return touched


def _forget(connection: Connection) -> None:
    if connection.invalidated:
        # The server dropped it mid-transaction: its DBAPI connection, with what it recorded, is discarded, and
        # reading `info` now would raise PendingRollbackError over the error that reports the loss.
        return
    connection.info.pop(_TOUCHED, None)
    connection.info.pop(_FLUSHING, None)


def _flush_ended(connection: Connection) -> None:
    connection.info.pop(_FLUSHING, None)


def _raise(connection: Connection) -> None:
    touched: Touched | None = connection.info.pop(_TOUCHED, None)
    if touched is not None and (touched.accounts or touched.tables):
        raise_versions(connection, touched.accounts, touched.tables)


def _statement(
    connection: Connection,
    statement: Any,
    multiparams: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    execution_options: Mapping[str, Any],
) -> None:
    if isinstance(statement, str | TextClause):
        text = statement if isinstance(statement, str) else statement.text
        if _WRITES.search(text):
            _touched(connection).tables.add(TEXTUAL_SQL)
        return
    if not isinstance(statement, UpdateBase) or connection.info.get(_FLUSHING):
        return  # a read, or the ORM's own statements of a flush (attributed object by object below)
    table = _table(statement)
    if table is None:
        return
    rows = [*multiparams, *([params] if params else [])]
    _attribute(
        connection,
        table,
        _accounts_written(statement, table, rows),
        membership=_inserts_or_deletes(statement),
    )


def _table(statement: UpdateBase) -> Table | None:
    """The application table a DML statement writes (not the counters, nor alembic's or anything else's)."""
    table = getattr(statement, "table", None)
    if not isinstance(table, Table) or table.name in _VERSION_TABLES:
        return None
    return table if SQLModel.metadata.tables.get(table.name) is not None else None


def _inserts_or_deletes(statement: UpdateBase) -> bool:
    return isinstance(statement, Insert | Delete)


def _attribute(connection: Connection, table: Table, accounts: set[int] | None, *, membership: bool) -> None:
    touched = _touched(connection)
    if accounts is None:
        touched.tables.add(table.name)  # which accounts is not known: every answer's key changes
        return
    touched.accounts.update(accounts)
    if membership and table.name in _MEMBERSHIP_TABLES:
        touched.tables.add(table.name)


def _account_column(table: Table) -> Column[Any] | None:
    if table.name == "account":
        return table.c.id
    column: Column[Any] | None = table.c.get("account_id")
    return column


def _accounts_written(statement: UpdateBase, table: Table, rows: list[Mapping[str, Any]]) -> set[int] | None:
    """The accounts whose rows the statement writes, or None when the statement does not say."""
    column = _account_column(table)
    if column is None:
        return None
    if isinstance(statement, Insert):
        return _inserted(statement, column, rows)
    if isinstance(statement, Update | Delete):
        return _where(statement.whereclause, column, rows)
    return None


def _inserted(statement: Insert, column: Column[Any], rows: list[Mapping[str, Any]]) -> set[int] | None:
    if statement.select is not None:
        return None  # INSERT ... SELECT: the rows come from the query
    value_rows: list[Mapping[Any, Any]] = []
    if statement._multi_values:
        for listed in statement._multi_values:
            value_rows.extend(row for row in listed if isinstance(row, Mapping))
    elif statement._values:
        value_rows.append(statement._values)
    accounts: set[int] = set()
    for row_values in value_rows:
        given = _named(row_values, column)
        if given is _MISSING:
            return _from_parameters(rows, column) if rows else None
        account = _account_id(given, rows)
        if account is None:
            return None
        accounts.update(account)
    if value_rows:
        return accounts
    return _from_parameters(rows, column)


_MISSING = object()


def _named(values: Mapping[Any, Any], column: Column[Any]) -> Any:
    for key, value in values.items():
        name = key if isinstance(key, str) else getattr(key, "key", None)
        if name == column.key:
            return value
    return _MISSING


def _from_parameters(rows: list[Mapping[str, Any]], column: Column[Any]) -> set[int] | None:
    if not rows:
        return None
    accounts: set[int] = set()
    for row in rows:
        value = row.get(column.key)
        if not isinstance(value, int) or isinstance(value, bool):
            return None  # an account-less row (a partner's key): no account to raise
        accounts.add(value)
    return accounts


def _account_id(value: Any, rows: list[Mapping[str, Any]]) -> set[int] | None:
    """The account ids a value in a statement stands for: a literal, a bound value (or list), or None."""
    if isinstance(value, Grouping):
        value = value.element
    if isinstance(value, CollectionAggregate):  # `= ANY(:ids)`
        value = value.element
        if isinstance(value, Grouping):
            value = value.element
    if isinstance(value, BindParameter):
        bound = value.effective_value
        if bound is None and rows and value.key in rows[0]:
            return _ints(row.get(value.key) for row in rows)
        value = bound
    if isinstance(value, int) and not isinstance(value, bool):
        return {value}
    if isinstance(value, list | tuple | set | frozenset):
        return _ints(value)
    return None


def _ints(values: Iterable[Any]) -> set[int] | None:
    found: set[int] = set()
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        found.add(value)
    return found


def _conjuncts(clause: Any) -> Iterable[ClauseElement]:
    if isinstance(clause, BooleanClauseList) and clause.operator is operators.and_:
        for inner in clause.clauses:
            yield from _conjuncts(inner)
    elif isinstance(clause, Grouping):
        yield from _conjuncts(clause.element)
    elif clause is not None:
        yield clause


def _where(
    clause: ClauseElement | None, column: Column[Any], rows: list[Mapping[str, Any]]
) -> set[int] | None:
    """The accounts an UPDATE or DELETE's WHERE limits it to (`account = x`, `IN`, `= ANY`), or None."""
    for conjunct in _conjuncts(clause):
        if not isinstance(conjunct, BinaryExpression):
            continue
        left = conjunct.left
        if getattr(left, "key", None) != column.key or getattr(left, "table", None) is not column.table:
            continue
        if conjunct.operator in (operators.eq, operators.in_op):
            accounts = _account_id(conjunct.right, rows)
            if accounts is not None:
                return accounts
    return None


# ------------------------------------------------------------------------------------- ORM flushes


@event.listens_for(Mapper, "before_insert")
@event.listens_for(Mapper, "before_update")
@event.listens_for(Mapper, "before_delete")
def _flush_starts(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    """The flush's statements for this mapper follow: the objects say whose rows they are (after_*)."""
    if connection.engine in _tracked:
        connection.info[_FLUSHING] = True


@event.listens_for(Mapper, "after_insert")
def _inserted_object(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    _flushed(mapper, connection, target, membership=True)


@event.listens_for(Mapper, "after_update")
def _updated_object(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    _flushed(mapper, connection, target, membership=False)


@event.listens_for(Mapper, "after_delete")
def _deleted_object(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    _flushed(mapper, connection, target, membership=True)


def _flushed(mapper: Mapper[Any], connection: Connection, target: Any, *, membership: bool) -> None:
    if connection.engine not in _tracked:
        return
    _flush_ended(connection)
    table = mapper.local_table
    if not isinstance(table, Table) or table.name in _VERSION_TABLES:
        return
    column = _account_column(table)
    accounts: set[int] | None = None
    if column is not None:
        # The account it belongs to now, and any it was moved from.
        # Read without loading anything (a deleted row cannot be loaded, and a flush must not query).
        history = attributes.get_history(target, column.key, passive=PassiveFlag.PASSIVE_NO_INITIALIZE)
        values = [*(history.added or ()), *(history.unchanged or ()), *(history.deleted or ())]
        accounts = _ints(value for value in values if value is not None)
        if not accounts:
            accounts = None  # a row of no account (a partner's or an admin's key)
    _attribute(connection, table, accounts, membership=membership)
