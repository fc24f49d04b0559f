"""Bounded cost, decided before any resolver runs: one test per limit (refused with its code and figures, and
accepted just under it), the cost estimate on every response, the time budget, PostgreSQL's statement timeout,
and the parse/validation cache.

Limits are set low through Settings, so the tests also prove each figure is the setting's.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession
from strawberry.schema.schema import validate_document

import root.limits
from billing.config import Environment, Settings
from billing.db import SessionFactory, engine_from_settings
from billing.ledger import history as transactions
from tests.support.factories import create_account, member_key
from tests.support.gateway import open_gateway
from tests.support.graphql_client import post_graphql

GRAPHQL_RESPONSE = "application/graphql-response+json"
PAGE = "{ account { transactions(first: 10) { edges { node { id } } } } }"  # 1 + 1 + 10 x 3 = 32


@pytest.fixture
async def key(session: AsyncSession) -> str:
    return await member_key(session, await create_account(session))


@asynccontextmanager
async def gateway(session_factory: SessionFactory, **limits: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app with these settings (e.g. `graphql_max_depth=3`), sharing the test's rolled-back transaction."""
    settings = Settings(
        environment=Environment.TEST, stripe_secret_key="sk_test_unused", embedded_worker=False, **limits
    )
    async with open_gateway(settings, session_factory) as client:
        yield client


async def ask(
    client: httpx.AsyncClient, key: str, query: str, variables: dict[str, object] | None = None
) -> tuple[int, dict[str, Any]]:
    response = await post_graphql(client, key, query, variables, headers={"Accept": GRAPHQL_RESPONSE})
    return response.status_code, response.json()


def assert_refused(
    answer: tuple[int, dict[str, Any]], code: str, limit: int, actual: int | None = None
) -> None:
    status, body = answer
    assert status == 400, body
    assert "data" not in body
    figures = {"limit": limit} | ({"actual": actual} if actual is not None else {})
    # The request's id (extensions.requestId, on errors of documents that parsed) is the observability tests'.
    extensions = [{k: v for k, v in e["extensions"].items() if k != "requestId"} for e in body["errors"]]
    assert extensions == [{"code": code, **figures}], body


def assert_accepted(answer: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    status, body = answer
    assert status == 200 and "errors" not in body, body
    return body


def codes(answer: tuple[int, dict[str, Any]]) -> set[str]:
    return {error["extensions"]["code"] for error in answer[1]["errors"]}


def nested(depth: int) -> str:
    """A made-up field nested `depth` levels below a root field: the depth check runs before validation."""
    return "{ " + "f { " * depth + "g" + " }" * (depth + 1)


def fragment_chain(length: int) -> str:
    """`{ ...F1 }` where each fragment spreads the next: spreads nest `length` deep."""
    fragments = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} }}" for i in range(1, length))
    return f"{{ ...F1 }} {fragments} fragment F{length} on Query {{ __typename }}"


@pytest.fixture
def resolvers_never_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every refusal below is decided before execution: a resolver reading transactions would record itself."""
    calls: list[str] = []

    async def recorded(*args: object, **kwargs: object) -> None:
        calls.append("transactions.history")

    monkeypatch.setattr(transactions, "history", recorded)
    yield calls
    assert calls == []


@pytest.fixture
def validated(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The documents graphql-core validates (after the parse and shape checks, on a cache miss)."""
    documents: list[object] = []

    def counted(*args: Any) -> Any:
        documents.append(args[1])
        return validate_document(*args)

    monkeypatch.setattr(root.limits, "validate_document", counted)
    return documents


# ------------------------------------------------------------------------------------------ body size


async def test_the_body_size_is_limited_before_it_is_read(session_factory: SessionFactory, key: str) -> None:
    def body(size: int) -> bytes:
        padded = json.dumps({"query": "{ __typename }", "extensions": {"pad": ""}})
        return json.dumps(
            {"query": "{ __typename }", "extensions": {"pad": "x" * (size - len(padded))}}
        ).encode()

    async def chunks(content: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(content), 100):  # no Content-Length: the limit applies as it streams in
            yield content[start : start + 100]

    headers = {
        "Authorization": f"Bearer {key}",
        "Accept": GRAPHQL_RESPONSE,
        "Content-Type": "application/json",
    }
    async with gateway(session_factory, graphql_max_body_bytes=300) as client:
        assert len(body(300)) == 300
        assert (await client.post("/graphql", content=body(300), headers=headers)).status_code == 200
        declared = await client.post("/graphql", content=body(301), headers=headers)
        streamed = await client.post("/graphql", content=chunks(body(301)), headers=headers)
        under = await client.post("/graphql", content=chunks(body(300)), headers=headers)
    assert under.status_code == 200
    assert declared.status_code == 413
    message = "The request body is larger than 300 bytes."
    figures = {
        "code": "REQUEST_TOO_LARGE",
        "limit": 300,
        "actual": 301,
        "requestId": declared.headers["X-Request-Id"],
    }
    assert declared.json() == {"errors": [{"message": message, "extensions": figures}]}
    assert streamed.status_code == 413
    figures = {"code": "REQUEST_TOO_LARGE", "limit": 300, "requestId": streamed.headers["X-Request-Id"]}
    assert streamed.json() == {"errors": [{"message": message, "extensions": figures}]}


async def test_a_10_mb_body_is_413_by_default(client: httpx.AsyncClient, key: str) -> None:
    body = json.dumps({"query": "{ __typename }", "extensions": {"pad": "x" * 10_000_000}})
    response = await client.post(
        "/graphql",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"] == {
        "code": "REQUEST_TOO_LARGE",
        "limit": 1_048_576,
        "actual": len(body),
        "requestId": response.headers["X-Request-Id"],
    }


# ----------------------------------------------------------------------------------------------- tokens


async def test_the_token_count_is_limited(session_factory: SessionFactory, key: str) -> None:
    ten = "{ " + "__typename " * 8 + "}"
    async with gateway(session_factory, graphql_max_tokens=10) as client:
        assert_accepted(await ask(client, key, ten))
        assert_refused(await ask(client, key, "{ " + "__typename " * 9 + "}"), "TOO_MANY_TOKENS", 10)
        # Comments count: a document padded with them costs the parser as much.
        assert_refused(await ask(client, key, "# a comment\n" + ten), "TOO_MANY_TOKENS", 10)


async def test_50_000_aliases_are_refused_before_the_parser_reads_them(
    client: httpx.AsyncClient, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_parser(*args: object, **kwargs: object) -> None:
        raise AssertionError("the parser was reached")

    query = "{ " + " ".join(f"a{i}: __typename" for i in range(50_000)) + " }"
    assert len(query) > 800_000
    monkeypatch.setattr(root.limits, "Parser", no_parser)
    assert_refused(await ask(client, key, query), "TOO_MANY_TOKENS", 2_000)


# ------------------------------------------------------------------------------------------------ depth


async def test_depth_is_limited_through_fragments_and_introspection_is_not_counted(
    session_factory: SessionFactory, key: str, resolvers_never_run: list[str]
) -> None:
    three = "{ account { balance { available { formatted } } } }"
    four = "{ account { transactions { edges { node { id } } } } }"
    through_a_fragment = (
        "{ account { ...T } } fragment T on Account { transactions { edges { node { id } } } }"
    )
    async with gateway(session_factory, graphql_max_depth=3) as client:
        assert_accepted(await ask(client, key, three))
        assert_accepted(
            await ask(client, key, "{ __schema { types { fields { type { ofType { name } } } } } }")
        )
        assert_refused(await ask(client, key, four), "QUERY_TOO_DEEP", 3, 4)
        assert_refused(await ask(client, key, through_a_fragment), "QUERY_TOO_DEEP", 3, 4)


async def test_the_default_depth_is_12(client: httpx.AsyncClient, key: str) -> None:
    assert_refused(await ask(client, key, nested(13)), "QUERY_TOO_DEEP", 12, 13)
    # 12 passes the depth check and reaches validation, which knows no field `f`.
    assert codes(await ask(client, key, nested(12))) == {"GRAPHQL_VALIDATION_FAILED"}


async def test_fragment_spreads_nest_no_deeper_than_the_depth_limit(
    session_factory: SessionFactory, key: str
) -> None:
    async with gateway(session_factory, graphql_max_tokens=100_000) as client:
        assert_accepted(await ask(client, key, fragment_chain(12)))
        assert_refused(await ask(client, key, fragment_chain(13)), "QUERY_TOO_DEEP", 12, 13)
        # A thousand links would exhaust the interpreter's stack in a recursive walk or in validation.
        assert_refused(await ask(client, key, fragment_chain(1_000)), "QUERY_TOO_DEEP", 12, 1_000)


# ---------------------------------------------------------------------------------------------- aliases


async def test_aliases_are_limited_and_counted_where_fragments_repeat_them(
    session_factory: SessionFactory, key: str, resolvers_never_run: list[str]
) -> None:
    async with gateway(session_factory, graphql_max_aliases=2) as client:
        assert_accepted(await ask(client, key, "{ a: account { id } b: account { name } }"))
        assert_refused(
            await ask(client, key, "{ a: account { id } b: account { name } c: __typename }"),
            "TOO_MANY_ALIASES",
            2,
            3,
        )
        twice = "{ account { ...F ...F } } fragment F on Account { x: id y: name }"
        assert_refused(await ask(client, key, twice), "TOO_MANY_ALIASES", 2, 4)


# ------------------------------------------------------------------------------------------ root fields


async def test_root_fields_are_limited_through_fragments(
    session_factory: SessionFactory, key: str, resolvers_never_run: list[str]
) -> None:
    async with gateway(session_factory, graphql_max_root_fields=2) as client:
        assert_accepted(await ask(client, key, "{ account { id } __typename }"))
        three = "{ account { id } __typename accounts { edges { cursor } } }"
        assert_refused(await ask(client, key, three), "TOO_MANY_ROOT_FIELDS", 2, 3)
        spread = "{ ...Q } fragment Q on Query { account { id } ... on Query { __typename a: __typename } }"
        assert_refused(await ask(client, key, spread), "TOO_MANY_ROOT_FIELDS", 2, 3)


async def test_a_fragment_bomb_is_measured_without_expanding_it(client: httpx.AsyncClient, key: str) -> None:
    """Each of 12 fragments spreads the next twice: 2^11 root fields, counted from one summary per fragment."""
    fragments = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(1, 12))
    query = f"{{ ...F1 }} {fragments} fragment F12 on Query {{ __typename }}"
    status, body = await ask(client, key, query)
    assert status == 400
    # 2,048 times the same root field: each is also a repeated one.
    assert [{k: v for k, v in e["extensions"].items() if k != "requestId"} for e in body["errors"]] == [
        {"code": "TOO_MANY_ROOT_FIELDS", "limit": 20, "actual": 2_048},
        {"code": "TOO_MANY_REPEATED_FIELDS", "limit": 50, "actual": 2_048},
    ]


# ------------------------------------------------------------------------------------- repeated fields


async def test_repeated_fields_are_limited_and_counted_with_what_they_select_and_where_fragments_repeat_them(
    session_factory: SessionFactory, key: str, resolvers_never_run: list[str]
) -> None:
    async with gateway(session_factory, graphql_max_repeated_fields=4) as client:
        # `name` twice (2) and `id` aliased twice to `x` (2): 4.
        assert_accepted(await ask(client, key, "{ account { name name x: id x: id company { vatId } } }"))
        five = "{ account { name name name name name } }"
        assert_refused(await ask(client, key, five), "TOO_MANY_REPEATED_FIELDS", 4, 5)
        # Each `company` counts with the field below it (2 + 2), and `name` twice (2).
        spread = "{ account { ...F ...F } } fragment F on Account { name company { legalName } }"
        assert_refused(await ask(client, key, spread), "TOO_MANY_REPEATED_FIELDS", 4, 6)
        # Repeats within repeats count at each level: `legalName` three times, then both `company`s (4 + 2).
        nested = "{ account { company { legalName legalName legalName } company { vatId } } }"
        assert_refused(await ask(client, key, nested), "TOO_MANY_REPEATED_FIELDS", 4, 9)


async def test_a_thousand_repeated_fields_are_refused_before_validation(
    client: httpx.AsyncClient, key: str, validated: list[object]
) -> None:
    """Within the token limit, but graphql-core's OverlappingFieldsCanBeMerged would compare each two of them."""
    query = "{ account { " + "name " * 1_000 + "} }"
    assert_refused(await ask(client, key, query), "TOO_MANY_REPEATED_FIELDS", 50, 1_000)
    assert validated == []


# ------------------------------------------------------------------------------------------------- cost


COSTS = {
    "a page of 10": (PAGE, None, 32),
    "first from a variable": (
        "query ($n: Int!) { account { transactions(first: $n) { edges { node { id } } } } }",
        {"n": 50},
        152,
    ),
    "first from the variable's default": (
        "query ($n: Int! = 5) { account { transactions(first: $n) { edges { node { id } } } } }",
        {},
        17,
    ),
    "first from the schema's default (20)": (
        "{ account { transactions { edges { node { id } } } } }",
        None,
        62,
    ),
    "nested pages multiply": (
        "{ accounts(first: 3) { edges { node { transactions(first: 4) { edges { node { id } } } } } } }",
        None,
        1 + 3 * (1 + 1 + (1 + 4 * 3)),
    ),
    "fragments count where they are spread": (
        "{ account { transactions(first: 2) { ...E } } } fragment E on TransactionConnection { edges { cursor } }",
        None,
        1 + 1 + 2 * 2,
    ),
    "lists without first count once": ("{ account { paymentMethods { id last4 } } }", None, 4),
}


@pytest.mark.parametrize(("query", "variables", "cost"), COSTS.values(), ids=COSTS.keys())
async def test_the_cost_estimate_is_on_every_response(
    client: httpx.AsyncClient, key: str, query: str, variables: dict[str, object] | None, cost: int
) -> None:
    body = assert_accepted(await ask(client, key, query, variables))
    assert body["extensions"] == {"cost": {"requested": cost, "limit": 20_000}}


async def test_the_cost_is_limited_before_any_resolver_runs(
    session_factory: SessionFactory, key: str, resolvers_never_run: list[str]
) -> None:
    async with gateway(session_factory, graphql_max_cost=31) as client:
        refused = await ask(client, key, PAGE)
        assert_refused(refused, "QUERY_TOO_COSTLY", 31, 32)
        assert refused[1]["extensions"] == {"cost": {"requested": 32, "limit": 31}}
        variable_page = "query ($n: Int!) { account { transactions(first: $n) { edges { node { id } } } } }"
        assert_refused(await ask(client, key, variable_page, {"n": 10}), "QUERY_TOO_COSTLY", 31, 32)


async def test_a_page_within_the_cost_limit_runs_and_reports_its_cost(
    session_factory: SessionFactory, key: str
) -> None:
    async with gateway(session_factory, graphql_max_cost=32) as client:
        body = assert_accepted(await ask(client, key, PAGE))
    assert body["data"] == {"account": {"transactions": {"edges": []}}}
    assert body["extensions"] == {"cost": {"requested": 32, "limit": 32}}


async def test_1000_aliased_pages_of_100_are_refused_by_every_limit_they_break(
    session_factory: SessionFactory, key: str, resolvers_never_run: list[str]
) -> None:
    query = (
        "{ "
        + " ".join(
            f"a{i}: account {{ transactions(first: 100) {{ edges {{ node {{ id }} }} }} }}"
            for i in range(1_000)
        )
        + " }"
    )
    async with gateway(session_factory) as client:
        assert codes(await ask(client, key, query)) == {"TOO_MANY_TOKENS"}
    async with gateway(session_factory, graphql_max_tokens=100_000) as client:
        assert codes(await ask(client, key, query)) == {"TOO_MANY_ALIASES", "TOO_MANY_ROOT_FIELDS"}
    lifted = {"graphql_max_tokens": 100_000, "graphql_max_aliases": 1_000, "graphql_max_root_fields": 1_000}
    async with gateway(session_factory, **lifted) as client:
        assert_refused(await ask(client, key, query), "QUERY_TOO_COSTLY", 20_000, 1_000 * (1 + 1 + 100 * 3))


async def test_more_fields_than_the_cost_limit_are_refused_before_validation(
    session_factory: SessionFactory, key: str
) -> None:
    """Every field costs at least 1, so the field count alone refuses a document before graphql-core validates."""
    async with gateway(session_factory, graphql_max_cost=3) as client:
        assert_refused(await ask(client, key, "{ a { b c } d }"), "QUERY_TOO_COSTLY", 3, 4)


# ------------------------------------------------------------------------------------------ time budget


async def test_a_request_over_its_time_budget_is_cancelled_while_healthz_keeps_answering(
    session_factory: SessionFactory, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = asyncio.Event()

    async def stuck(*args: object, **kwargs: object) -> None:
        started.set()
        await asyncio.Event().wait()  # never set: only the time budget ends it

    monkeypatch.setattr(transactions, "history", stuck)
    async with gateway(session_factory, graphql_timeout_seconds=0.5) as client:
        slow = asyncio.create_task(ask(client, key, PAGE))
        await started.wait()
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.text == "ok"
        assert not slow.done()
        status, body = await slow
        monkeypatch.undo()
        after = assert_accepted(await ask(client, key, PAGE))
    assert status == 504
    assert body == {
        "errors": [
            {
                "message": "The request took longer than 0.5 s and was cancelled.",
                "extensions": {"code": "REQUEST_TIMEOUT", "limit": 0.5, "requestId": ANY},
            }
        ]
    }
    assert after["data"] == {"account": {"transactions": {"edges": []}}}


async def test_postgresql_ends_a_statement_at_the_statement_timeout(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no statement timeout; the request's time budget covers it")
    url = engine.url.render_as_string(hide_password=False)
    bounded = engine_from_settings(Settings(database_url=url, db_statement_timeout_seconds=0.2))
    try:
        async with bounded.connect() as connection:
            assert (await connection.execute(text("SHOW statement_timeout"))).scalar_one() == "200ms"
            with pytest.raises(DBAPIError, match="statement timeout"):
                await connection.execute(text("SELECT pg_sleep(5)"))
    finally:
        await bounded.dispose()


async def test_a_statement_ended_by_postgresql_is_a_statement_timeout_error(
    session_factory: SessionFactory, connection: AsyncConnection, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if connection.dialect.name != "postgresql":
        pytest.skip("SQLite has no statement timeout; the request's time budget covers it")
    # The test's sessions share this connection: the setting holds for them until the test rolls back.
    await connection.execute(text("SET LOCAL statement_timeout = '100ms'"))

    async def slow(session: AsyncSession, *args: object, **kwargs: object) -> None:
        await session.exec(text("SELECT pg_sleep(5)"))  # type: ignore[call-overload]

    monkeypatch.setattr(transactions, "history", slow)
    async with gateway(session_factory, db_statement_timeout_seconds=0.1) as client:
        status, body = await ask(client, key, PAGE)
    assert status == 200
    assert body["errors"] == [
        {
            "message": "A database statement took longer than 0.1 s and was cancelled.",
            "locations": [{"line": 1, "column": 13}],
            "path": ["account", "transactions"],
            "extensions": {"code": "STATEMENT_TIMEOUT", "limit": 0.1, "requestId": ANY},
        }
    ]


# ------------------------------------------------------------------------------------------------ cache


async def test_a_query_text_is_parsed_and_validated_once(
    client: httpx.AsyncClient, key: str, validated: list[object]
) -> None:
    query = "query ($n: Int!) { account { transactions(first: $n) { edges { node { id } } } } }"
    for n in (1, 2, 3):
        assert_accepted(await ask(client, key, query, {"n": n}))
    assert len(validated) == 1
    assert_accepted(await ask(client, key, PAGE))
    assert len(validated) == 2
