"""Posting GraphQL operations the way the frontend does."""

from collections.abc import Mapping
from typing import Any

import httpx


async def execute(
    client: httpx.AsyncClient, key: str | None, query: str, variables: Mapping[str, object] | None = None
) -> dict[str, Any]:
    """The JSON body of a POST /graphql; asserts it is a GraphQL response (200), not a crash."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": dict(variables or {})}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error_messages(body: dict[str, Any]) -> list[str]:
    return [error["message"] for error in body.get("errors") or []]
