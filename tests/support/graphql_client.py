"""Posting GraphQL operations the way the frontend does."""

from collections.abc import Mapping
from typing import Any

import httpx

# The query text (sent with its variables), or a whole request body (e.g. `{"documentId": ...}`).
Operation = str | Mapping[str, object]


async def post_graphql(
    client: httpx.AsyncClient,
    key: str | None,
    operation: Operation,
    variables: Mapping[str, object] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    url: str = "/graphql",
) -> httpx.Response:
    """POST /graphql (of the client's base URL, or another gateway's `url`) with `key` as the Bearer token; the raw
    response, for tests of status codes and headers."""
    body = (
        {"query": operation, "variables": dict(variables or {})} if isinstance(operation, str) else operation
    )
    bearer = {"Authorization": f"Bearer {key}"} if key else {}
    return await client.post(url, json=body, headers=bearer | dict(headers or {}))


async def execute(
    client: httpx.AsyncClient,
    key: str | None,
    operation: Operation,
    variables: Mapping[str, object] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON body of a POST /graphql; asserts it is a GraphQL response (200), not a crash."""
    response = await post_graphql(client, key, operation, variables, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def execute_ok(
    client: httpx.AsyncClient,
    key: str | None,
    operation: Operation,
    variables: Mapping[str, object] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON body of a POST /graphql that answered without top-level errors."""
    body = await execute(client, key, operation, variables, headers=headers)
    assert "errors" not in body, body
    return body


def error_messages(body: dict[str, Any]) -> list[str]:
    return [error["message"] for error in body.get("errors") or []]
