"""Scalars, parsed strictly: GraphQL `Int` is 32-bit, so money in minor units travels as a string-safe `BigInt`;
`DateTime` is ISO 8601 with ASCII digits only.

Both refuse anything but ASCII digits (Python's `int()` and `str.isdigit` take Unicode digits too) and decide in
time bounded by a short length limit, checked first. A refusal is an InvalidArgument, so the client gets
BAD_USER_INPUT, never an internal error.

A DateTime without a zone parses here and is refused by the code that takes it (a transactions filter, a usage
event), because only there is the argument known by name: `filter.since`, or a problem of event 3 of a batch.
"""

import re
from datetime import UTC, datetime
from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

from billing.errors import InvalidArgument

BigInt = NewType("BigInt", int)

# A BigInt is stored in a signed 64-bit column.
BIG_INT_MIN, BIG_INT_MAX = -(2**63), 2**63 - 1
_BIG_INT = re.compile(r"-?[0-9]{1,19}", re.ASCII)
# ISO 8601 date and time ('Z' or an offset, or none: see above); fractions to the microsecond.
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?([Zz]|[+-][0-9]{2}:[0-9]{2})?",
    re.ASCII,
)
_MAX_DATE_TIME_LENGTH = 40


def parse_big_int(value: object) -> BigInt:
    """A whole number in the signed 64-bit range, as a string of ASCII digits or a JSON integer."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(text, str)
        or not _BIG_INT.fullmatch(text)
        or not BIG_INT_MIN <= int(text) <= BIG_INT_MAX
    ):
        raise InvalidArgument("BigInt", f"must be a whole number from {BIG_INT_MIN} to {BIG_INT_MAX}")
    return BigInt(int(text))


def parse_date_time(value: object) -> datetime:
    """An ISO 8601 date and time, e.g. '2026-03-10T12:00:00Z' or '2026-03-10T13:00:00+01:00'."""
    if not isinstance(value, str) or len(value) > _MAX_DATE_TIME_LENGTH or not _DATE_TIME.fullmatch(value):
        raise InvalidArgument(
            "DateTime",
            "must be a date and time with a UTC offset, e.g. '2026-03-10T12:00:00Z' or '...+01:00'",
        )
    try:
        moment = datetime.fromisoformat(value.upper())
        if moment.tzinfo is not None:
            # Near year 1 or 9999 an offset can carry the moment out of range; comparisons are made in UTC.
            moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument("DateTime", "must be a real date and time within the years 1 to 9999") from None
    return moment


SCALARS: dict[object, ScalarDefinition] = {
    BigInt: strawberry.scalar(
        name="BigInt",
        description=(
            "A whole number in the signed 64-bit range, sent as a string of ASCII digits"
            " (minor units of money exceed 32 bits)."
        ),
        serialize=str,
        parse_value=parse_big_int,
    ),
    datetime: strawberry.scalar(
        name="DateTime",
        description="Date with time (isoformat)",
        serialize=datetime.isoformat,
        parse_value=parse_date_time,
    ),
}
