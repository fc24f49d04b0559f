"""The authorization matrix over every query, discovered from the schema (a new query field or Account field is
covered without editing this file): asked by a member, a partner or a usage reporter about another account's
objects, each answers exactly what it answers for objects that do not exist, and never a byte of the other
account's data. Mutations: tests/gateway/test_mutation_walk.py sends every mutation another account's IDs."""

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from graphql import (
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    build_schema,
    get_named_type,
)
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.keys import service as auth
from billing.ledger import service as ledger
from models import PrincipalKind, TransactionKind
from root.schema import sdl
from schema.node import MAX_PK, parse_global_id, to_global_id
from tests.support.billing_world import World, create_world
from tests.support.factories import SYSTEM, create_partner, member_key, partner_key
from tests.support.graphql_client import execute
from tests.support.mutation_requests import selection

SCHEMA: GraphQLSchema = build_schema(sdl())
assert SCHEMA.query_type is not None
QUERY: GraphQLObjectType = SCHEMA.query_type
DEPTH = 3


@dataclass
class Matrix:
    mine: World
    foreign_ids: dict[str, str]  # every global ID of the other account's objects, by argument name
    secrets: list[str]  # strings only the other account's data contains
    keys: dict[str, str]  # principal kind -> raw key; none of them may see `theirs`


@pytest.fixture
async def matrix(session: AsyncSession) -> Matrix:
    mine, theirs = await create_world(session), await create_world(session)
    theirs.account.name = "Foreign Secret Ltd"
    assert theirs.account.id is not None
    await ledger.post(
        session,
        SYSTEM,
        account_id=theirs.account.id,
        kind=TransactionKind.TOP_UP,
        amount_minor=4_242,
        description="foreign top-up",
        idempotency_key="matrix-foreign",
    )
    await session.flush()
    partner = await create_partner(session, mine.account)
    _, reporter = await auth.create_api_key(
        session, kind=PrincipalKind.USAGE_REPORTER, name="matrix reporter"
    )
    keys = {
        "member": await member_key(session, mine.account),
        "partner": await partner_key(session, partner),
        "usage reporter": reporter,
    }
    ids = dict(theirs.ids)
    secrets = [*ids.values(), "Foreign Secret Ltd", "foreign top-up"]
    return Matrix(mine, ids, secrets, keys)


def missing_like(global_id: str) -> str:
    """A well-formed ID of the same type whose row does not exist."""
    type_name, _ = parse_global_id(global_id, "id")
    return to_global_id(type_name, MAX_PK)


def document(name: str, field: GraphQLField, id_arguments: list[str], object_type: str) -> str:
    """The field with every ID argument a variable and everything below it selected; behind an interface
    (`node`), everything of the type the ID names."""
    variables = ", ".join(f"${argument}: {field.args[argument].type}" for argument in id_arguments)
    arguments = ", ".join(f"{argument}: ${argument}" for argument in id_arguments)
    head = f"query({variables})" if variables else "query"
    call = f"{name}({arguments})" if arguments else name
    named = get_named_type(field.type)
    if isinstance(named, GraphQLInterfaceType):
        concrete = SCHEMA.get_type(object_type)
        assert isinstance(concrete, GraphQLObjectType)
        return f"{head} {{ {call} {{ __typename ... on {object_type} {selection(concrete, DEPTH)} }} }}"
    return f"{head} {{ {call} {selection(field.type, DEPTH)} }}"


def id_arguments(field: GraphQLField) -> list[str]:
    return [name for name, argument in field.args.items() if get_named_type(argument.type).name == "ID"]


def answer(body: dict[str, Any]) -> tuple[object, list[tuple[str, object]]]:
    """What a client can tell apart: the data and each error's message and code (not the request id)."""
    errors = [
        (error["message"], error.get("extensions", {}).get("code")) for error in body.get("errors") or []
    ]
    return body.get("data"), errors


def leaks(body: dict[str, Any], secrets: list[str]) -> list[str]:
    text = json.dumps(body)
    return [secret for secret in secrets if secret in text]


QUERY_FIELDS = sorted(QUERY.fields)


def test_the_matrix_covers_every_query_field() -> None:
    # The cases below are built from the schema; this only guards the discovery itself.
    assert {"account", "accounts", "node"} <= set(QUERY_FIELDS)


@pytest.mark.parametrize("principal", ["member", "partner", "usage reporter"])
@pytest.mark.parametrize("name", QUERY_FIELDS)
async def test_another_accounts_objects_look_missing(
    matrix: Matrix, client: httpx.AsyncClient, name: str, principal: str
) -> None:
    field = QUERY.fields[name]
    key = matrix.keys[principal]
    arguments = id_arguments(field)
    if not arguments:
        body = await execute(client, key, document(name, field, [], ""))
        assert leaks(body, matrix.secrets) == [], (name, principal)
        return
    for kind, foreign in matrix.foreign_ids.items():
        object_type, _ = parse_global_id(foreign, "id")
        query = document(name, field, arguments, object_type)
        # The same document about the caller's own object of that kind answers data, so it is a valid one.
        own = await execute(
            client, matrix.keys["member"], query, dict.fromkeys(arguments, matrix.mine.ids[kind])
        )
        field_type = get_named_type(field.type)
        if isinstance(field_type, GraphQLInterfaceType) or field_type.name == object_type:
            assert own.get("errors") is None and own["data"] is not None, (name, kind, own)
        foreign_body = await execute(client, key, query, dict.fromkeys(arguments, foreign))
        missing_body = await execute(client, key, query, dict.fromkeys(arguments, missing_like(foreign)))
        assert leaks(foreign_body, matrix.secrets) == [], (name, principal, foreign)
        assert answer(foreign_body) == answer(missing_body), (name, principal, foreign)
