"""The members of a mutation's payload union, read from the committed schema (so a new member needs no edit)."""

from functools import cache

from graphql import GraphQLUnionType, build_schema

from tests.conftest import ROOT


@cache
def union_members(union: str) -> frozenset[str]:
    found = build_schema((ROOT / "schema.graphql").read_text(encoding="utf-8")).get_type(union)
    assert isinstance(found, GraphQLUnionType), f"{union} is not a union in schema.graphql"
    return frozenset(member.name for member in found.types)
