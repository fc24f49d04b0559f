"""Every mutation of the schema, discovered from it (a new one is walked without editing this file), answers
each of these with a member of its own payload union, or with a top-level BAD_USER_INPUT for bad input, and
never with INTERNAL_SERVER_ERROR or a 5xx:

- a Stripe outage (the gateway points at a loopback port nobody listens on): a mutation whose union has
  PaymentProviderUnavailableError answers exactly that;
- a Stripe that rejects every request (400 invalid_request_error; a stub over HTTP, see tests/support/stripe_refusals.py,
  because localstripe cannot be made to refuse everything), with a text naming a customer id and an internal URL
  that no answer may repeat;
- a bank that declines every card (402 card_error, the same stub), for mutations whose union has a member with
  a `declineCode`: they answer such a member;
- bad input: each ID in turn unknown, malformed, or another account's (asked by a partner who cannot see that
  account), and each amount in turn malformed, negative, too precise or too long: always an error.

Arguments are generated from the input types (tests/support/mutation_requests.py) with a table of valid values by
field name (tests/support/billing_world.py); with valid arguments no mutation may answer a top-level error at all, so the walk cannot pass by
refusing everything as bad input.
"""

import base64
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from graphql import GraphQLSchema, build_schema
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.db import SessionFactory
from devtools.stripe_standin import free_port
from root.schema import sdl
from schema.node import MAX_PK, parse_global_id, to_global_id
from tests.support.billing_world import World, create_world
from tests.support.factories import admin_key, create_partner, partner_key
from tests.support.gateway import open_gateway
from tests.support.graphql_client import post_graphql
from tests.support.mutation_requests import (
    Leaf,
    MutationRequest,
    build_request,
    error_members,
    members,
    members_with_field,
    mutations,
)
from tests.support.stripe_refusals import LEAKS, declining, rejecting
from tests.support.stripe_server import stripe_settings

# The schema the code serves now (the committed schema.graphql is checked against it elsewhere).
SCHEMA: GraphQLSchema = build_schema(sdl())
MUTATIONS = sorted(mutations(SCHEMA))

AMOUNT_FIELDS = frozenset({"amount", "threshold", "monthlyLimit", "monthlyBudget", "pricePerLead", "cost"})
# An exponent, spaces, a sign, too many decimals, not a number, empty, too long, Arabic-Indic digits.
BAD_AMOUNTS = ["1e999990", "1e1", " 10 ", "-5.00", "10.001", "abc", "", "9" * 40, "\u0661\u0660"]


@dataclass
class Walk:
    mine: World
    theirs: World
    admin: str
    partner: str  # sees `mine` only
    session_factory: SessionFactory


@pytest.fixture
async def walk(session: AsyncSession, session_factory: SessionFactory) -> Walk:
    mine, theirs = await create_world(session), await create_world(session)
    partner = await create_partner(session, mine.account)
    return Walk(mine, theirs, await admin_key(session), await partner_key(session, partner), session_factory)


def outage() -> AbstractAsyncContextManager[str]:
    return nullcontext(f"http://127.0.0.1:{free_port()}")


@dataclass
class Outcome:
    """What one request answered: the union member's name, or the codes of top-level errors."""

    typename: str | None
    error_codes: list[str]
    body: dict[str, Any]


async def send(
    client: httpx.AsyncClient, key: str, request: MutationRequest, variables: dict[str, Any]
) -> Outcome:
    response = await post_graphql(client, key, request.document, variables)
    assert response.status_code < 500, f"{request.name} {variables}: {response.status_code} {response.text}"
    body = response.json()
    codes = [(error.get("extensions") or {}).get("code", "NO_CODE") for error in body.get("errors") or []]
    answer = (body.get("data") or {}).get(request.name)
    return Outcome(answer["__typename"] if answer else None, codes, body)


def assert_in_union(request: MutationRequest, outcome: Outcome, *, bad_input: bool) -> None:
    """A member of the mutation's union, or (for bad input only) a top-level BAD_USER_INPUT."""
    where = f"{request.name}: {outcome.body}"
    if outcome.error_codes:
        assert bad_input, f"valid arguments answered top-level errors: {where}"
        assert set(outcome.error_codes) == {"BAD_USER_INPUT"}, where
        return
    assert outcome.typename in members(SCHEMA, request.name), where
    if bad_input:
        assert outcome.typename in error_members(SCHEMA, request.name), f"bad input succeeded: {where}"


Scenario = Callable[[], AbstractAsyncContextManager[str]]


async def answer_valid(walk: Walk, mutation: str, stripe: Scenario) -> Outcome:
    request = build_request(SCHEMA, mutation, walk.mine.values())
    async with stripe() as url, open_gateway(stripe_settings(url), walk.session_factory) as client:
        outcome = await send(client, walk.admin, request, request.variables)
    assert_in_union(request, outcome, bad_input=False)
    return outcome


@pytest.mark.parametrize("mutation", MUTATIONS)
async def test_a_stripe_outage_is_the_unavailable_member(walk: Walk, mutation: str) -> None:
    outcome = await answer_valid(walk, mutation, outage)
    if "PaymentProviderUnavailableError" in members(SCHEMA, mutation):
        assert outcome.typename == "PaymentProviderUnavailableError", outcome.body


@pytest.mark.parametrize("mutation", MUTATIONS)
async def test_a_stripe_rejection_is_a_member_of_the_union(walk: Walk, mutation: str) -> None:
    outcome = await answer_valid(walk, mutation, rejecting)
    answer = json.dumps(outcome.body)
    assert not [leak for leak in LEAKS if leak in answer], answer


DECLINING = [name for name in MUTATIONS if members_with_field(SCHEMA, name, "declineCode")]


@pytest.mark.parametrize("mutation", DECLINING)
async def test_a_declined_card_is_a_decline_member(walk: Walk, mutation: str) -> None:
    outcome = await answer_valid(walk, mutation, declining)
    assert outcome.typename in members_with_field(SCHEMA, mutation, "declineCode"), outcome.body
    answer = outcome.body["data"][mutation]
    assert answer["declineCode"] == "insufficient_funds", answer


def test_some_mutation_can_be_declined() -> None:
    """The decline walk above is not empty: attaching and charging a card have decline members."""
    assert {"attachPaymentMethod", "addFunds"} <= set(DECLINING)


def _encoded(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def bad_ids(walk: Walk, leaf: Leaf, valid: object) -> list[tuple[str, object]]:
    """(key, ID) pairs: one of the right kind naming nothing, malformed ones (a Unicode digit, 23 digits, not
    base64), and another account's object asked for by a partner who cannot see that account."""
    assert isinstance(valid, str)
    kind, _ = parse_global_id(valid, leaf.name)
    return [
        (walk.admin, to_global_id(kind, MAX_PK)),
        (walk.admin, _encoded(f"{kind}:²")),
        (walk.admin, _encoded(f"{kind}:{'9' * 23}")),
        (walk.admin, "not an id"),
        (walk.partner, walk.theirs.ids.get(leaf.name, walk.theirs.ids["accountId"])),
    ]


@pytest.mark.parametrize("mutation", MUTATIONS)
async def test_bad_input_is_an_error_member_or_bad_user_input(walk: Walk, mutation: str) -> None:
    request = build_request(SCHEMA, mutation, walk.mine.values())
    spoiled: list[tuple[str, dict[str, Any]]] = []
    for leaf in request.leaves:
        if leaf.scalar == "ID":
            spoiled += [
                (key, request.with_value(leaf, bad))
                for key, bad in bad_ids(walk, leaf, request.value_at(leaf))
            ]
        if leaf.name in AMOUNT_FIELDS:
            spoiled += [(walk.admin, request.with_value(leaf, bad)) for bad in BAD_AMOUNTS]
    async with outage() as url, open_gateway(stripe_settings(url), walk.session_factory) as client:
        for key, variables in spoiled:
            assert_in_union(request, await send(client, key, request, variables), bad_input=True)
