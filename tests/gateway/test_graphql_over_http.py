"""GraphQL over HTTP (the specification's MUSTs and SHOULDs): media types, request shapes, status codes.

Each failure class is asked for with both response media types; the spec's audit suite (graphql-http) names the
cases. "No data" means the key is absent, not null: nothing was executed.
"""

import json
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from server_graphql import MediaType, clipped, negotiate
from tests.support.factories import create_account, member_key

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
BOTH = [GRAPHQL_RESPONSE, JSON]


@pytest.fixture
async def key(session: AsyncSession) -> str:
    return await member_key(session, await create_account(session))


async def post(
    client: httpx.AsyncClient,
    key: str,
    body: object,
    *,
    accept: str | None = GRAPHQL_RESPONSE,
    content_type: str | None = JSON,
) -> httpx.Response:
    """POST /graphql with exactly these headers (None leaves one out); a str or bytes body is sent as is."""
    content = body if isinstance(body, str | bytes) else json.dumps(body)
    request = client.build_request(
        "POST", "/graphql", content=content, headers={"Authorization": f"Bearer {key}"}
    )
    for name, value in (("accept", accept), ("content-type", content_type)):
        request.headers.pop(name, None)
        if value is not None:
            request.headers[name] = value
    return await client.send(request)


def assert_request_error(
    response: httpx.Response, accept: str, code: str, *, status: int = 400
) -> dict[str, Any]:
    """Nothing ran: 4xx with graphql-response+json, 200 with application/json (the spec), no `data` either way."""
    assert response.status_code == (status if accept == GRAPHQL_RESPONSE else 200), response.text
    assert response.headers["content-type"] == f"{accept}; charset=utf-8"
    body: dict[str, Any] = response.json()
    assert "data" not in body, body
    assert {error["extensions"]["code"] for error in body["errors"]} == {code}, body
    return body


def without_cost(response: httpx.Response) -> dict[str, Any]:
    """The body without `extensions.cost` (every executed operation reports it; tests/gateway/test_limits.py checks it)."""
    body: dict[str, Any] = response.json()
    assert set(body.pop("extensions")) == {"cost"}
    return body


# --------------------------------------------------------------------------------------- media types


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, MediaType.JSON),  # no Accept: legacy clients (audit 80D8)
        ("", MediaType.JSON),
        ("*/*", MediaType.JSON),  # audit 47DE
        ("application/*", MediaType.JSON),
        ("application/json", MediaType.JSON),
        ("application/graphql-response+json", MediaType.GRAPHQL_RESPONSE),
        # The spec's recommended header: the first listed wins at equal quality.
        (
            "application/graphql-response+json; charset=utf-8, application/json; charset=utf-8",
            MediaType.GRAPHQL_RESPONSE,
        ),
        ("application/json, application/graphql-response+json", MediaType.JSON),
        ("application/json;q=0.5, application/graphql-response+json", MediaType.GRAPHQL_RESPONSE),
        ("application/graphql-response+json;q=0.1, */*", MediaType.JSON),
        ("text/html, application/xhtml+xml, */*;q=0.8", MediaType.JSON),
        ("application/JSON; Charset=UTF-8", MediaType.JSON),
        # A more specific range decides a type's quality, wherever it is listed.
        ("*/*, application/json;q=0", MediaType.GRAPHQL_RESPONSE),
        ("text/html", None),
        ("application/json; charset=iso-8859-1", None),
        ("application/json;q=0, application/graphql-response+json;q=0", None),
        ("application/xml", None),
    ],
)
def test_accept_header_negotiation(accept: str | None, chosen: MediaType | None) -> None:
    assert negotiate(accept) is chosen


async def test_each_media_type_answers_in_its_own_content_type(client: httpx.AsyncClient, key: str) -> None:
    for accept, content_type in [
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (JSON, JSON),
        ("*/*", JSON),
        (None, JSON),
        (
            "application/graphql-response+json; charset=utf-8, application/json; charset=utf-8",
            GRAPHQL_RESPONSE,
        ),
    ]:
        response = await post(client, key, {"query": "{ __typename }"}, accept=accept)
        assert response.status_code == 200
        assert response.headers["content-type"] == f"{content_type}; charset=utf-8"
        assert response.headers["vary"] == "Accept"
        assert without_cost(response) == {"data": {"__typename": "Query"}}


async def test_an_accept_header_we_cannot_satisfy_is_406(client: httpx.AsyncClient, key: str) -> None:
    response = await post(client, key, {"query": "{ __typename }"}, accept="text/html")
    assert response.status_code == 406
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_ACCEPTABLE"


@pytest.mark.parametrize(
    "content_type", [JSON, "application/json; charset=utf-8", "application/json;charset=UTF8"]
)
async def test_json_in_utf_8_is_accepted_with_or_without_a_charset(
    client: httpx.AsyncClient, key: str, content_type: str
) -> None:
    response = await post(
        client, key, {"query": '{ __type(name: "Run🏃Swim🏊") { name } }'}, content_type=content_type
    )
    assert response.status_code == 200
    assert without_cost(response) == {"data": {"__type": None}}


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/graphql", "application/json; charset=latin-1", "multipart/form-data"],
)
async def test_other_request_media_types_are_415(
    client: httpx.AsyncClient, key: str, content_type: str | None
) -> None:
    response = await post(client, key, {"query": "{ __typename }"}, content_type=content_type)
    assert response.status_code == 415
    assert response.json()["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


# ------------------------------------------------------------------------------- malformed requests


MALFORMED = {
    "not JSON": '{ "not a JSON',
    "empty": "",
    "whitespace": "  \n",
    "not UTF-8": b'{"query": "{ __typename \xff\xfe }"}',
    "nested 1,000 deep": "[" * 1_000 + "]" * 1_000,
    "object nested 1,000 deep": '{"query": "{ __typename }", "variables": {"v": '
    + '{"a": ' * 1_000
    + "1"
    + "}" * 1_001
    + "}",
    "NaN": '{"query": "{ __typename }", "variables": {"v": NaN}}',
    "a 5,000-digit number": '{"query": "{ __typename }", "variables": {"v": ' + "9" * 5_000 + "}}",
    "a batch": [{"query": "{ __typename }"}],
    "a string": '"{ __typename }"',
    "no query": {"qeury": "{ __typename }"},
    "query null": {"query": None},
    "query an object": {"query": {"obj": "ect"}},
    "query a number": {"query": 0},
    "query false": {"query": False},
    "query an array": {"query": ["array"]},
    "variables a string": {"query": "{ __typename }", "variables": "string"},
    "variables a number": {"query": "{ __typename }", "variables": 0},
    "variables an array": {"query": "{ __typename }", "variables": [7]},
    "extensions a string": {"query": "{ __typename }", "extensions": "string"},
    "extensions false": {"query": "{ __typename }", "extensions": False},
    "operationName an object": {"query": "{ __typename }", "operationName": {"obj": "ect"}},
    "operationName a number": {"query": "{ __typename }", "operationName": 0},
}


@pytest.mark.parametrize(
    ("body", "accept"),
    # Each with graphql-response+json; two with application/json, where the spec asks for a 400 too.
    [(body, GRAPHQL_RESPONSE) for body in MALFORMED.values()]
    + [(MALFORMED["not JSON"], JSON), (MALFORMED["no query"], JSON)],
    ids=[*MALFORMED, "not JSON, application/json", "no query, application/json"],
)
async def test_a_request_that_is_not_well_formed_is_400_with_a_graphql_shaped_error(
    client: httpx.AsyncClient, key: str, body: object, accept: str
) -> None:
    response = await post(client, key, body, accept=accept)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == f"{accept}; charset=utf-8"
    answer = response.json()
    extensions = {"code": "BAD_REQUEST", "requestId": response.headers["X-Request-Id"]}
    assert answer == {"errors": [{"message": answer["errors"][0]["message"], "extensions": extensions}]}


@pytest.mark.parametrize("accept", BOTH)
@pytest.mark.parametrize("parameter", ["variables", "operationName", "extensions"])
async def test_null_optional_parameters_are_as_if_absent(
    client: httpx.AsyncClient, key: str, accept: str, parameter: str
) -> None:
    response = await post(client, key, {"query": "{ __typename }", parameter: None}, accept=accept)
    assert response.status_code == 200
    assert without_cost(response) == {"data": {"__typename": "Query"}}


async def test_a_map_of_extensions_and_an_operation_name_are_accepted(
    client: httpx.AsyncClient, key: str
) -> None:
    body = {
        "query": "query Q { __typename } query R { account { id } }",
        "operationName": "Q",
        "extensions": {"a": 1},
    }
    response = await post(client, key, body)
    assert response.status_code == 200
    assert without_cost(response) == {"data": {"__typename": "Query"}}


# ------------------------------------------------------------------------- GraphQL request errors


REQUEST_ERRORS = {
    "parse failure": ({"query": "{"}, "GRAPHQL_PARSE_FAILED"),
    "empty document": ({"query": ""}, "GRAPHQL_PARSE_FAILED"),
    "validation failure": ({"query": "{ noSuchField }"}, "GRAPHQL_VALIDATION_FAILED"),
    "unknown operation": (
        {"query": "query A { __typename }", "operationName": "B"},
        "GRAPHQL_VALIDATION_FAILED",
    ),
    "operation not named": (
        {"query": "query A { __typename } query B { __typename }"},
        "GRAPHQL_VALIDATION_FAILED",
    ),
    "subscription": ({"query": "subscription { __typename }"}, "GRAPHQL_VALIDATION_FAILED"),
    "fragment cycle": (
        {"query": "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }"},
        "GRAPHQL_VALIDATION_FAILED",
    ),
    "unknown fragment": ({"query": "{ ...Nope }"}, "GRAPHQL_VALIDATION_FAILED"),
    "variable coercion": (
        {
            "query": "query Coerce($name: String!) { __type(name: $name) { name } }",
            "variables": {"name": None},
        },
        "BAD_USER_INPUT",
    ),
}


@pytest.mark.parametrize("accept", BOTH)
@pytest.mark.parametrize(("body", "code"), REQUEST_ERRORS.values(), ids=REQUEST_ERRORS.keys())
async def test_request_errors_are_400_with_graphql_response_json_and_200_with_json_and_never_have_data(
    client: httpx.AsyncClient, key: str, body: dict[str, object], code: str, accept: str
) -> None:
    assert_request_error(await post(client, key, body, accept=accept), accept, code)


TRANSACTIONS = "query ($first: Int!) { account { transactions(first: $first) { edges { node { id } } } } }"
KINDS = "query ($kinds: [TransactionKind!]) { account { transactions(filter: {kinds: $kinds}) { edges { node { id } } } } }"
COMPANY = "mutation ($input: UpdateCompanyInput!) { updateCompany(input: $input) { __typename } }"
COMPANY_INPUT = {
    "legalName": "Acme GmbH",
    "registrationNumber": "HRB 1",
    "phone": "030 1234567",
    "address": {"line1": "Unter den Linden 1", "city": "Berlin", "postalCode": "10117", "country": "DE"},
}
FRONTEND_MISTAKES = {
    "a variable of the wrong type": (
        TRANSACTIONS,
        {"first": "ten"},
        "Int cannot represent non-integer value",
    ),
    "a missing required variable": (TRANSACTIONS, {}, "'Int!'"),
    "a null required variable": (TRANSACTIONS, {"first": None}, "'Int!'"),
    "a bad enum value": (KINDS, {"kinds": ["NOPE"]}, "'NOPE' does not exist in 'TransactionKind'"),
    "a missing required input field": (
        COMPANY,
        {"input": {key: value for key, value in COMPANY_INPUT.items() if key != "legalName"}},
        "legalName",
    ),
    "a null required input field": (COMPANY, {"input": {**COMPANY_INPUT, "legalName": None}}, "legalName"),
    "a required nested input field missing": (
        COMPANY,
        {"input": {**COMPANY_INPUT, "address": {"line1": "Unter den Linden 1"}}},
        "city",
    ),
}


@pytest.mark.parametrize("accept", BOTH)
@pytest.mark.parametrize(
    ("query", "variables", "named"), FRONTEND_MISTAKES.values(), ids=FRONTEND_MISTAKES.keys()
)
async def test_ordinary_frontend_mistakes_in_variables_are_bad_user_input_not_internal_errors(
    client: httpx.AsyncClient, key: str, query: str, variables: dict[str, object], named: str, accept: str
) -> None:
    response = await post(client, key, {"query": query, "variables": variables}, accept=accept)
    body = assert_request_error(response, accept, "BAD_USER_INPUT")
    assert all("Unexpected error" not in error["message"] for error in body["errors"])
    assert named in " ".join(error["message"] for error in body["errors"])


async def test_a_field_error_after_execution_started_is_200_with_data(
    client: httpx.AsyncClient, key: str
) -> None:
    query = '{ account { name transactions(first: 10, after: "not a cursor") { edges { cursor } } } }'
    response = await post(client, key, {"query": query})
    assert response.status_code == 200
    body = response.json()
    assert "data" in body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["path"] == ["account", "transactions"]


# -------------------------------------------------------------------------------------------- GET


async def get(
    client: httpx.AsyncClient, key: str, params: Mapping[str, str], accept: str = GRAPHQL_RESPONSE
) -> httpx.Response:
    return await client.get(
        "/graphql", params=params, headers={"Authorization": f"Bearer {key}", "Accept": accept}
    )


async def test_a_query_over_get_is_answered_with_its_url_encoded_variables(
    client: httpx.AsyncClient, key: str
) -> None:
    params = {
        "query": "query Type($name: String!) { __type(name: $name) { name } }",
        "variables": json.dumps({"name": "Account"}),
        "operationName": "",
    }
    response = await get(client, key, params)
    assert response.status_code == 200
    assert without_cost(response) == {"data": {"__type": {"name": "Account"}}}


@pytest.mark.parametrize("accept", BOTH)
async def test_a_mutation_over_get_is_405_and_runs_nothing(
    client: httpx.AsyncClient, key: str, accept: str
) -> None:
    response = await get(client, key, {"query": "mutation { createSetupIntent { __typename } }"}, accept)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"


async def test_get_without_a_query_is_still_the_graphiql_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


async def test_get_requires_the_key_like_post(client: httpx.AsyncClient) -> None:
    assert (await client.get("/graphql", params={"query": "{ __typename }"})).status_code == 401


# --------------------------------------------------------------------------------- echoed input


def test_long_quoted_values_are_clipped_and_messages_bounded() -> None:
    huge = "x" * 100_000
    message = clipped(f"Expected value of type 'Int!', found \"{huge}\"; Int cannot represent it.")
    assert message == f"Expected value of type 'Int!', found \"{'x' * 40}…\"; Int cannot represent it."
    assert len(clipped("a " * 100_000)) == 1_001
    assert clipped("Variable '$first' got 'ten'.") == "Variable '$first' got 'ten'."


@pytest.mark.parametrize(
    "body",
    [
        {"query": TRANSACTIONS, "variables": {"first": "y" * 600_000}},
        {"query": '{ account { transactions(first: "' + "y" * 600_000 + '") { edges { cursor } } } }'},
        {"query": '{ account { name(x: "' + "y" * 600_000 + '") } }'},
    ],
    ids=["in a variable", "in an argument literal", "in an unknown argument"],
)
async def test_a_huge_string_in_a_request_is_never_echoed_back(
    client: httpx.AsyncClient, key: str, body: dict[str, object]
) -> None:
    response = await post(client, key, body)
    assert response.status_code == 400
    assert len(response.content) < 2_000
    assert "y" * 100 not in response.text
