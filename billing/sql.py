"""SQL that SQLite and PostgreSQL both speak, through each dialect's own constructs: ON CONFLICT, and id lists."""

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Column, ColumnElement, any_, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session
from sqlmodel.ext.asyncio.session import AsyncSession


def upsert_insert(session: AsyncSession, model: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT for `model` that supports `on_conflict_do_update/nothing` on the session's database."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def among(
    session: AsyncSession | Session, column: ColumnElement[Any] | Mapped[Any], values: Iterable[Any]
) -> ColumnElement[bool]:
    """`column IN values`. On PostgreSQL the values are one array parameter (`column = ANY(:values)`), so the
    statement's text, and its prepared plan, is the same for any number of them; SQLite has no arrays."""
    values = list(values)
    expression: ColumnElement[Any] = column  # type: ignore[assignment]  # a Mapped column is one at runtime
    if session.get_bind().dialect.name == "postgresql":
        return expression == any_(bindparam(None, values, type_=postgresql.ARRAY(expression.type)))
    return expression.in_(values)


def among_parameter(dialect: str, column: ColumnElement[Any] | Mapped[Any], name: str) -> ColumnElement[bool]:
    """`among` for a statement built once per database kind: the values are the parameter `name`, a list (one
    array on PostgreSQL; an IN list SQLite expands)."""
    expression: ColumnElement[Any] = column  # type: ignore[assignment]  # a Mapped column is one at runtime
    if dialect == "postgresql":
        return expression == any_(bindparam(name, type_=postgresql.ARRAY(expression.type)))
    return expression.in_(bindparam(name, expanding=True))


def columns(model: Any, names: Sequence[str]) -> list[Column[Any]]:
    """The columns of `model`'s table called `names`, in that order: a select of them makes rows with those
    fields (a NamedTuple's `_fields`)."""
    table = model.__table__
    return [table.c[name] for name in names]
