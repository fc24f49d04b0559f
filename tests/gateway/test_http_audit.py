"""What a black-box audit over HTTP found: inputs that reached the database or the encoder unguarded and answered
500, and authenticated answers without the headers that keep them out of caches.

Each request is what an outside checker sent; each is answered with a GraphQL error naming the problem (or, for
headers, carries them), on SQLite and PostgreSQL, with both response media types.
"""

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.support.factories import create_account, member_key
from tests.support.graphql_client import post_graphql

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
BOTH = [GRAPHQL_RESPONSE, JSON]

CREATE_ENDPOINT = """
mutation Create($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) { __typename ... on Error { message } }
}
"""
ENDPOINTS = "{ account { webhookEndpoints { id description } } }"
HISTORY_TEXT = (Path(__file__).parents[2] / "trusted_documents" / "history.graphql").read_text(
    encoding="utf-8"
)
HISTORY_ID = "sha256:" + hashlib.sha256(HISTORY_TEXT.encode()).hexdigest()
# Beyond the 64-bit integers orjson writes.
HUGE = 10**20


@pytest.fixture
async def key(session: AsyncSession) -> str:
    return await member_key(session, await create_account(session))


def endpoint(**overrides: str) -> dict[str, object]:
    # On loopback: allowed outside production, and nothing resolves a name.
    return {"url": "http://127.0.0.1:9/hooks", "eventTypes": ["topup.succeeded"], **overrides}


def assert_refused(response: httpx.Response, accept: str, code: str) -> dict[str, Any]:
    """A request error: 400 with graphql-response+json, 200 with application/json, no `data` (nothing ran)."""
    assert response.status_code == (400 if accept == GRAPHQL_RESPONSE else 200), response.text
    body: dict[str, Any] = response.json()
    assert "data" not in body, body
    assert [error["extensions"]["code"] for error in body["errors"]] == [code], body
    return body


# ------------------------------------------------------------------------------------------ U+0000 (NUL)


INLINE_ENDPOINT = """
mutation {
  createWebhookEndpoint(input: {url: "http://127.0.0.1:9/hooks", eventTypes: ["topup.succeeded"], description: "%s"}) {
    __typename
  }
}
"""


@pytest.mark.parametrize("accept", BOTH)
@pytest.mark.parametrize(
    ("query", "variables"),
    [
        # PostgreSQL refused to store these: INTERNAL_SERVER_ERROR, while SQLite stored the NUL.
        (CREATE_ENDPOINT, {"input": endpoint(description="Zapier\u0000")}),
        (CREATE_ENDPOINT, {"input": endpoint(url="http://127.0.0.1:9/hooks\u0000")}),
        # The same character written as GraphQL escapes in the document.
        (INLINE_ENDPOINT % "x\\u0000y", None),
        (INLINE_ENDPOINT % "x\\u{0}y", None),
    ],
    ids=["variable", "url-variable", "escape", "braced-escape"],
)
async def test_a_string_holding_nul_is_bad_user_input_and_writes_nothing(
    client: httpx.AsyncClient, key: str, accept: str, query: str, variables: dict[str, object] | None
) -> None:
    response = await post_graphql(client, key, query, variables, headers={"Accept": accept})

    body = assert_refused(response, accept, "BAD_USER_INPUT")
    assert body["errors"][0]["message"] == (
        "A string in the request holds the character U+0000 (NUL), which no field accepts."
    )
    listed = (await post_graphql(client, key, ENDPOINTS)).json()
    assert listed["data"]["account"]["webhookEndpoints"] == []


async def test_a_nul_over_get_is_refused_the_same_way(client: httpx.AsyncClient, key: str) -> None:
    response = await client.get(
        "/graphql",
        params={
            "query": "query($m: String) { account { usage(month: $m) { month } } }",
            "variables": '{"m": "\\u0000"}',
        },
        headers={"Authorization": f"Bearer {key}", "Accept": GRAPHQL_RESPONSE},
    )

    assert_refused(response, GRAPHQL_RESPONSE, "BAD_USER_INPUT")


async def test_other_control_characters_and_escaped_backslashes_still_pass(
    client: httpx.AsyncClient, key: str
) -> None:
    response = await post_graphql(
        client, key, CREATE_ENDPOINT, {"input": endpoint(description="tab\there \\u0001")}
    )

    assert response.json()["data"]["createWebhookEndpoint"]["__typename"] == "CreateWebhookEndpointSuccess"


# --------------------------------------------------------------------------- integers beyond 64 bits


@pytest.mark.parametrize("accept", BOTH)
async def test_a_huge_first_in_a_registered_query_is_too_costly_not_a_500(
    client: httpx.AsyncClient, key: str, accept: str
) -> None:
    # The response cache's key and the refusal's `actual` both met orjson's 64-bit limit (500, text/plain).
    response = await post_graphql(
        client, key, {"documentId": HISTORY_ID, "variables": {"first": HUGE}}, headers={"Accept": accept}
    )

    body = assert_refused(response, accept, "QUERY_TOO_COSTLY")
    assert body["errors"][0]["extensions"]["actual"] > HUGE


@pytest.mark.parametrize("accept", BOTH)
async def test_a_huge_unused_variable_leaves_a_registered_query_answered(
    client: httpx.AsyncClient, key: str, accept: str
) -> None:
    variables = {"first": 2, "unused": HUGE}

    for _ in range(2):  # answered uncached, each time
        response = await post_graphql(
            client, key, {"documentId": HISTORY_ID, "variables": variables}, headers={"Accept": accept}
        )
        assert response.status_code == 200, response.text
        assert response.json()["data"]["account"]["transactions"]["edges"] == []


async def test_a_huge_first_in_any_document_is_too_costly_with_its_exact_estimate(
    client: httpx.AsyncClient, key: str
) -> None:
    query = "query($f: Int!) { account { transactions(first: $f) { edges { cursor } } } }"

    response = await post_graphql(client, key, query, {"f": HUGE}, headers={"Accept": GRAPHQL_RESPONSE})

    body = assert_refused(response, GRAPHQL_RESPONSE, "QUERY_TOO_COSTLY")
    assert (
        body["errors"][0]["extensions"]["actual"] == 1 + 1 + HUGE * 2
    )  # account, the connection, edges+cursor


# ----------------------------------------------------------------------------------------------- headers


def assert_private(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store", response.headers
    assert response.headers["x-content-type-options"] == "nosniff", response.headers


async def test_every_graphql_answer_is_kept_out_of_caches_and_never_sniffed(
    client: httpx.AsyncClient, key: str
) -> None:
    bearer = {"Authorization": f"Bearer {key}"}
    registered = {"documentId": HISTORY_ID, "variables": {"first": 2}}
    answers = [
        await post_graphql(client, key, "{ account { name } }"),
        await client.get("/graphql", params={"query": "{ account { name } }"}, headers=bearer),
        await post_graphql(client, key, registered),
        await post_graphql(client, key, registered),  # the response cache's hit
        await post_graphql(client, key, "{ account { nope } }"),
        await client.get(
            "/graphql", params={"query": "mutation { createSetupIntent { __typename } }"}, headers=bearer
        ),
        await client.post("/graphql", content=b"[]", headers={**bearer, "Content-Type": JSON}),
    ]

    assert [response.status_code for response in answers] == [200, 200, 200, 200, 200, 405, 400]
    for response in answers:
        assert_private(response)
