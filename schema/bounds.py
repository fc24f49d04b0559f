"""Bounded inputs: every free-text field of an input declares its maximum length (its column's), and every list
its maximum size, so an oversized value is refused as BAD_USER_INPUT when the input is built, before a resolver
does any work, and is never stored, charged or echoed.

Fields whose bound a service already checks as part of a typed union error (the company form, a lead plan's
name, a usage event's external id) keep that check; this is for the rest.
"""

import dataclasses
from typing import Any, Literal

import strawberry
from strawberry.types.base import get_object_definition
from strawberry.utils.str_converters import to_camel_case

from billing.errors import InvalidArgument

_BOUNDS = "bounds"


@dataclasses.dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    unit: Literal["characters", "items"]


def bounded(
    max_length: int,
    description: str = "",
    *,
    min_length: int = 0,
    unit: Literal["characters", "items"] = "characters",
    default: Any = dataclasses.MISSING,
) -> Any:
    """An input field of `min_length` to `max_length` characters (or items, for a list); the schema says so."""
    limit = f"{min_length:,} to {max_length:,}" if min_length else f"At most {max_length:,}"
    return strawberry.field(
        description=f"{description} {limit} {unit}.".strip(),
        metadata={_BOUNDS: _Bounds(min_length, max_length, unit)},
        default=default,
    )


def column_length(model: Any, column: str) -> int:
    """The declared length of a string column: the one source of a stored field's bound."""
    return int(model.__table__.c[column].type.length)


class BoundedInput:
    """Base of `@strawberry.input` classes with `bounded` fields: checks them as the input is built.

    An input that is always one named argument says so (`class F(BoundedInput, argument="filter")`), and its
    fields are named under it (`filter.kinds`); a mutation's `input` names them plainly, as resolvers do.
    """

    _argument_prefix = ""

    def __init_subclass__(cls, argument: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._argument_prefix = f"{argument}." if argument else ""

    def __post_init__(self) -> None:
        for field in get_object_definition(self, strict=True).fields:
            bounds: _Bounds | None = field.metadata.get(_BOUNDS)
            value = getattr(self, field.python_name)
            if bounds is None or not isinstance(value, str | list):
                continue  # unbounded, null, or not given
            if not bounds.low <= len(value) <= bounds.high:
                wanted = f"{bounds.low:,} to {bounds.high:,}" if bounds.low else f"at most {bounds.high:,}"
                name = field.graphql_name or to_camel_case(field.python_name)
                raise InvalidArgument(self._argument_prefix + name, f"must have {wanted} {bounds.unit}")
