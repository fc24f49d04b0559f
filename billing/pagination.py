"""Keyset pagination: opaque cursors over sort keys, bounded page sizes, argument errors that name the argument."""

import base64
import binascii
from dataclasses import dataclass
from typing import Generic, TypeVar

from billing.errors import DomainError

T = TypeVar("T")

MAX_PAGE_SIZE = 100


class InvalidArgument(DomainError):
    """A request argument the client can fix: the message and `argument` say which and why."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument


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
        fields = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidArgument(argument, "not a valid cursor") from None
    if len(fields) != parts + 1 or fields[0] != kind:
        raise InvalidArgument(argument, "not a valid cursor")
    return fields[1:]
