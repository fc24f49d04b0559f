"""Generated operations against the app: queries and mutations from the committed schema.graphql
(hypothesis-graphql), well-formed and deliberately invalid, asked with every kind of key. No answer may be a 5xx
or carry an INTERNAL_SERVER_ERROR; anything else (a typed error, BAD_USER_INPUT, a refused limit) is fine.

The seed is fixed (`derandomize`), so a run is repeatable and a failure reproduces; FUZZ_EXAMPLES (default 60)
sets the number of operations per test; `make fuzz` runs many more. IDs are drawn partly from the real
objects of an account, amounts partly from decimal-looking text, so generated operations get past argument
parsing and into the services. Stripe is unreachable (a closed loopback port): nothing leaves the machine.

The app runs as in production, on its own engine and pool over a database of its own (a fresh SQLite file, a
fresh PostgreSQL database), not on the test's rolled-back connection: a request whose failing root field cancels
a sibling in the middle of a statement (graphql-core cancels them) would leave that one shared connection
unusable for every later example, which says nothing about the gateway.
"""

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC
from functools import cache
from typing import Any

import graphql
import httpx
import hypothesis
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, nodes, queries
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.config import Environment
from billing.db import create_engine, session_factory
from billing.keys import service as auth
from devtools.stripe_standin import free_port
from models import PrincipalKind
from tests.conftest import ROOT, migrated_database
from tests.support.billing_world import World, create_world
from tests.support.factories import admin_key, create_partner, member_key, partner_key
from tests.support.gateway import open_gateway
from tests.support.graphql_client import post_graphql
from tests.support.stripe_server import stripe_settings

SCHEMA = (ROOT / "schema.graphql").read_text(encoding="utf-8")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))

Operations = Callable[..., st.SearchStrategy[str]]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A migrated database for this module only."""
    async with migrated_database(request.param, "fuzz") as url:
        yield url


async def reporter_key(session: AsyncSession) -> str:
    _, raw = await auth.create_api_key(session, kind=PrincipalKind.USAGE_REPORTER, name="fuzz reporter")
    return raw


@pytest.fixture(scope="module")
async def fuzz(database_url: str) -> tuple[World, list[str]]:
    """An account with data to read and change, and a key of every kind (the member's and partner's see it)."""
    engine = create_engine(database_url)
    async with session_factory(engine)() as session:
        world = await create_world(session)
        partner = await create_partner(session, world.account)
        keys = [
            await admin_key(session),
            await member_key(session, world.account),
            await partner_key(session, partner),
            await reporter_key(session),
        ]
        await session.commit()
    await engine.dispose()
    return world, keys


@pytest.fixture(scope="module")
async def gateway(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ASGI with its own engine (built by its lifespan); Stripe unreachable on loopback."""
    settings = stripe_settings(
        f"http://127.0.0.1:{free_port()}", environment=Environment.TEST, database_url=database_url
    )
    async with open_gateway(settings) as client:
        yield client


def custom_scalars(ids: tuple[str, ...]) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    """Values that reach past parsing often enough to matter, mixed with anything at all."""
    any_id = st.one_of(st.sampled_from(ids), st.text(max_size=30))
    decimals = st.decimals(
        min_value=-1000, max_value=100_000, places=2, allow_nan=False, allow_infinity=False
    )
    amounts = st.one_of(
        decimals.map(str),
        st.sampled_from(["50.00", "1e999990", " 10 ", "0", "10.001", "9" * 30]),
        st.text(max_size=30),
    )
    moments = st.one_of(
        st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.isoformat()), st.text(max_size=40)
    )
    days = st.one_of(st.dates().map(lambda day: day.isoformat()), st.text(max_size=20))
    big_ints = st.one_of(st.integers().map(str), st.text(max_size=25))
    return {
        "ID": any_id.map(nodes.String),
        "String": amounts.map(nodes.String),
        "DateTime": moments.map(nodes.String),
        "Date": days.map(nodes.String),
        "BigInt": st.one_of(big_ints.map(nodes.String), st.integers().map(nodes.Int)),
    }


@cache
def operations_for(operations: Operations, mode: Mode, ids: tuple[str, ...]) -> st.SearchStrategy[str]:
    return operations(SCHEMA, custom_scalars=custom_scalars(ids), mode=mode)


def assert_no_crash(response: httpx.Response, query: str) -> None:
    assert response.status_code < 500, f"{response.status_code} for {query!r}: {response.text[:2000]}"
    if "json" not in response.headers.get("content-type", ""):
        return  # a refusal before GraphQL (e.g. a body too large) is plain text, and not a crash
    body: dict[str, Any] = response.json()
    internal = [
        error
        for error in body.get("errors") or []
        if (error.get("extensions") or {}).get("code") == "INTERNAL_SERVER_ERROR"
    ]
    assert not internal, f"{internal} for {query!r}"


KINDS = [
    pytest.param(queries, Mode.POSITIVE, id="queries"),
    pytest.param(mutations, Mode.POSITIVE, id="mutations"),
    pytest.param(queries, Mode.NEGATIVE, id="invalid-queries"),
    pytest.param(mutations, Mode.NEGATIVE, id="invalid-mutations"),
]


@pytest.mark.parametrize(("operations", "mode"), KINDS)
@hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
async def test_generated_operations_never_crash(
    gateway: httpx.AsyncClient,
    fuzz: tuple[World, list[str]],
    operations: Operations,
    mode: Mode,
    data: st.DataObject,
) -> None:
    world, keys = fuzz
    query = data.draw(operations_for(operations, mode, tuple(sorted(world.ids.values()))), label="query")
    key = data.draw(st.sampled_from(keys), label="key")
    try:
        response = await post_graphql(gateway, key, query)
    except asyncio.CancelledError as error:
        # Raised out of the app (a server would send no answer), not a cancellation of this test: as a
        # failure, Hypothesis shrinks the operation and reports it, which it does not for a BaseException.
        raise AssertionError(f"no answer, the app raised CancelledError for {query!r}") from error
    assert_no_crash(response, query)
