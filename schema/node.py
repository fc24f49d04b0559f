"""Relay global IDs: opaque `Type:pk` strings, so frontend caches can key every object (encoded and parsed by
billing/global_ids.py, which outgoing webhooks use too)."""

import strawberry

from billing import global_ids
from billing.global_ids import MAX_PK, from_global_id, parse_global_id

__all__ = ["MAX_PK", "Node", "from_global_id", "parse_global_id", "to_global_id"]


@strawberry.interface(description="An object with a globally unique ID.")
class Node:
    id: strawberry.ID


def to_global_id(type_name: str, pk: int) -> strawberry.ID:
    return strawberry.ID(global_ids.to_global_id(type_name, pk))
