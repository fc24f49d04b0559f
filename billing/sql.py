"""SQL that SQLite and PostgreSQL both speak, through each dialect's own constructs: ON CONFLICT, and id lists."""

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, ColumnElement, Executable, Row, any_, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session
from sqlmodel.ext.asyncio.session import AsyncSession

if TYPE_CHECKING:  # billing.scope imports billing.keys.repository, which needs nothing of this module
    from billing.keys.repository import Reach
    from billing.scope import Scope


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


async def scoped_rows(
    session: AsyncSession,
    scope: "Scope",
    statement_for: "Callable[[str, Reach], Executable]",
    parameters: dict[str, Any],
) -> Sequence[Row[Any]]:
    """The Core rows of the statement `statement_for(database kind, scope.reach)` (built once per pair: build it
    with `among_parameter` and `reach_rule`) run with `parameters` and the scope's: no ORM entities, about half
    the CPU of reading the same rows as entities."""
    statement = statement_for(session.get_bind().dialect.name, scope.reach)
    connection = await session.connection()
    return (await connection.execute(statement, {**parameters, **scope.parameters()})).all()
