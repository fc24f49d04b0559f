"""Serving an ASGI app on a free loopback port inside the test's event loop (stub Stripe APIs, webhook targets)."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs

import uvicorn
from starlette.types import ASGIApp

from devtools.stripe_standin import free_port


async def _started(server: uvicorn.Server) -> None:
    # uvicorn exposes only a flag to poll; the caller bounds the wait.
    while not server.started:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """The app's base URL while the block runs."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    try:
        await asyncio.wait_for(_started(server), timeout=10)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def form(body: bytes) -> dict[str, str]:
    """A Stripe SDK request body (form-encoded, nested keys flattened as `a[b]`)."""
    return {key: values[0] for key, values in parse_qs(body.decode()).items()}
