"""A client that hangs up while its request body is still arriving gets no answer, and the server no error."""

from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import Message

from billing.config import Settings
from billing.db import SessionFactory
from tests.support.factories import admin_key
from tests.support.gateway import running_app


async def test_a_body_cut_off_by_a_disconnect_is_dropped_quietly(
    settings: Settings, session: AsyncSession, session_factory: SessionFactory
) -> None:
    key = await admin_key(session)
    await session.commit()
    incoming: list[Message] = [
        {"type": "http.request", "body": b'{"query": "{ acc', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"gateway.test"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {key}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("gateway.test", 80),
        "state": {},
    }
    # Straight to the ASGI app: an HTTP client cannot hang up halfway through its own body.
    async with running_app(settings, session_factory) as app:
        await app(scope, receive, send)
    assert not [message for message in sent if message["type"] == "http.response.start"]
