"""The one way tests build the app: `running_app` runs its lifespan, `open_gateway` adds an HTTP client over ASGI."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette

from billing.config import Settings
from billing.db import SessionFactory
from billing.stripe_gateway import StripeGateway
from server import create_app

BASE_URL = "http://gateway.test"


@asynccontextmanager
async def running_app(
    settings: Settings,
    sessions: SessionFactory | None = None,
    *,
    stripe: StripeGateway | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[Starlette]:
    """The app with its lifespan running. `sessions` shares a test's rolled-back transaction (without it the app
    builds its own engine from `settings.database_url`); `stripe` replaces the Stripe client the settings make."""
    app = create_app(settings, sessions=sessions, tracer_provider=tracer_provider)
    if stripe is not None:
        app.state.stripe = stripe
    async with app.router.lifespan_context(app):
        yield app


@asynccontextmanager
async def open_gateway(
    settings: Settings,
    sessions: SessionFactory | None = None,
    *,
    stripe: StripeGateway | None = None,
    tracer_provider: TracerProvider | None = None,
    request_timeout: float = 5.0,
    caller: tuple[str, int] = ("127.0.0.1", 123),
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the running app (see `running_app`); requests come from the address `caller`. The request
    timeout and the caller default to httpx's own."""
    async with (
        running_app(settings, sessions, stripe=stripe, tracer_provider=tracer_provider) as app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=caller), base_url=BASE_URL, timeout=request_timeout
        ) as client,
    ):
        yield client
