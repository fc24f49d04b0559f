"""What a black-box audit of the WebSocket found: a query or a mutation sent where only subscriptions run was
answered as an unexpected server error (INTERNAL_SERVER_ERROR, logged with a traceback) instead of the request
error the protocol's clients expect."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import ANY

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from billing.config import Environment, Settings
from billing.db import create_engine, session_factory
from server_graphql_ws import PROTOCOL
from tests.conftest import migrated_database
from tests.support.factories import create_account, member_key
from tests.support.gateway import running_app
from tests.support.loopback import serving

WAIT_SECONDS = 10


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A migrated database for this module only (the socket's requests commit in a process of their own)."""
    async with migrated_database(request.param, "socket_audit") as url:
        yield url


async def receive(socket: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), WAIT_SECONDS))
    return message


@pytest.mark.parametrize(
    "query",
    ["{ account { id } }", "mutation { createSetupIntent { __typename } }"],
    ids=["query", "mutation"],
)
async def test_a_query_or_mutation_over_the_socket_is_a_request_error_and_the_socket_stays(
    database_url: str, query: str
) -> None:
    engine = create_engine(database_url)
    async with session_factory(engine)() as session:
        key = await member_key(session, await create_account(session))
        await session.commit()
    await engine.dispose()
    settings = Settings(environment=Environment.TEST, database_url=database_url, embedded_worker=False)

    async with (
        running_app(settings) as app,
        serving(app) as url,
        connect(url.replace("http://", "ws://") + "/graphql", subprotocols=[Subprotocol(PROTOCOL)]) as socket,
    ):
        await socket.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}})
        )
        assert await receive(socket) == {"type": "connection_ack"}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))

        assert await receive(socket) == {
            "id": "1",
            "type": "error",
            "payload": [
                {
                    "message": "Only subscriptions are served over this WebSocket: send queries and mutations"
                    " with HTTP POST.",
                    # Each subscription is a request of its own, with its own id.
                    "extensions": {"code": "GRAPHQL_VALIDATION_FAILED", "requestId": ANY},
                }
            ],
        }
        await socket.send(json.dumps({"type": "ping"}))
        assert await receive(socket) == {"type": "pong"}
