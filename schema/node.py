"""Relay global IDs: opaque `Type:pk` strings, so frontend caches can key every object."""

import base64
import binascii

import strawberry

from billing.pagination import InvalidArgument


@strawberry.interface(description="An object with a globally unique ID.")
class Node:
    id: strawberry.ID


def to_global_id(type_name: str, pk: int) -> strawberry.ID:
    return strawberry.ID(base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode())


def parse_global_id(global_id: str, argument: str) -> tuple[str, int]:
    """(type name, pk) of a global ID, or an InvalidArgument naming `argument`."""
    try:
        type_name, raw_pk = base64.urlsafe_b64decode(global_id.encode()).decode().split(":", 1)
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidArgument(argument, "not a valid ID") from None
    if not raw_pk.isdigit():
        raise InvalidArgument(argument, "not a valid ID")
    return type_name, int(raw_pk)


def from_global_id(global_id: str, type_name: str, argument: str) -> int:
    """The pk of a global ID that must name a `type_name`."""
    found_type, pk = parse_global_id(global_id, argument)
    if found_type != type_name:
        raise InvalidArgument(argument, f"not a {type_name} ID")
    return pk
