"""Keyset pagination: opaque cursors over sort keys, bounded page sizes, argument errors that name the argument."""

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from billing.errors import InvalidArgument

T = TypeVar("T")

MAX_PAGE_SIZE = 100
# Cursors are ours: a kind and a few short keys. Anything longer is refused before it is decoded.
MAX_CURSOR_LENGTH = 200
# The parts cursors carry, exactly as `encode_cursor` callers write them: a row id in ASCII digits within the
# INTEGER primary keys' range (32-bit on PostgreSQL; BIGINT keys pass their own `maximum`), and an aware
# `datetime.isoformat()`.
MAX_ROW_ID = 2**31 - 1
MAX_BIG_ROW_ID = 2**63 - 1
_ROW_ID = re.compile(r"[1-9][0-9]{0,18}", re.ASCII)
_MOMENT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?[+-][0-9]{2}:[0-9]{2}", re.ASCII
)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_next: bool


def check_page_size(first: int, argument: str = "first") -> int:
    if not 1 <= first <= MAX_PAGE_SIZE:
        raise InvalidArgument(argument, f"must be between 1 and {MAX_PAGE_SIZE}, got {first}")
    return first


def encode_cursor(kind: str, *parts: str) -> str:
    return base64.urlsafe_b64encode("|".join((kind, *parts)).encode()).decode()


def decode_cursor(cursor: str, kind: str, parts: int, argument: str = "after") -> list[str]:
    """The parts of a cursor made by `encode_cursor(kind, ...)`; anything else is an InvalidArgument."""
    try:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError("too long")
        fields = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode().split("|")
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidArgument(argument, "not a valid cursor") from None
    if len(fields) != parts + 1 or fields[0] != kind:
        raise InvalidArgument(argument, "not a valid cursor")
    return fields[1:]


def cursor_row_id(part: str, argument: str = "after", *, maximum: int = MAX_ROW_ID) -> int:
    """A row id carried by a cursor: ASCII digits, positive and within the key column's range."""
    if not _ROW_ID.fullmatch(part) or int(part) > maximum:
        raise InvalidArgument(argument, "not a valid cursor")
    return int(part)


def cursor_moment(part: str, argument: str = "after") -> datetime:
    """A timestamp carried by a cursor, with its zone (a naive one cannot be compared with a UTC column)."""
    try:
        if not _MOMENT.fullmatch(part):
            raise ValueError("not an aware isoformat")
        moment = datetime.fromisoformat(part)
        moment.astimezone(UTC)  # an offset can carry year 1 or 9999 out of range
    except (ValueError, OverflowError):
        raise InvalidArgument(argument, "not a valid cursor") from None
    return moment
