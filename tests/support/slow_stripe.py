"""A Stripe that takes its time: the PaymentIntents stub (tests/support/stripe_stub.py) behind a fixed latency, plus
`GET /v1/payment_intents/{id}` for the webhook and replay paths that read a PaymentIntent back.

localstripe answers in milliseconds and cannot be slowed down, hence a stub at the HTTP layer. Every
PaymentIntent created is also put on `created`, so a test can send its webhook the moment it exists.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.loopback import serving
from tests.support.stripe_stub import PaymentIntentsStub


class SlowStripe:
    def __init__(self, latency_seconds: float) -> None:
        self.latency_seconds = latency_seconds
        self.payment_intents = PaymentIntentsStub()
        self.created: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._by_id: dict[str, dict[str, Any]] = {}

    @property
    def charges(self) -> int:
        return self.payment_intents.charges

    async def create(self, request: Request) -> Response:
        await asyncio.sleep(self.latency_seconds)  # the simulated network and bank, not synchronisation
        response = await self.payment_intents.create(request)
        body: dict[str, Any] = json.loads(bytes(response.body))
        if response.status_code == 200 and body["id"] not in self._by_id:
            self._by_id[body["id"]] = body
            self.created.put_nowait(body)
        return response

    async def retrieve(self, request: Request) -> Response:
        await asyncio.sleep(self.latency_seconds)
        intent = self._by_id.get(request.path_params["id"])
        if intent is None:
            error = {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "message": "No such payment_intent",
            }
            return JSONResponse({"error": error}, 404)
        return JSONResponse(intent)


@asynccontextmanager
async def slow_stripe(latency_seconds: float) -> AsyncIterator[tuple[str, SlowStripe]]:
    """The stub's base URL (for `stripe_settings`) and the stub, while the block runs."""
    stripe = SlowStripe(latency_seconds)
    app = Starlette(
        routes=[
            Route("/v1/payment_intents", stripe.create, methods=["POST"]),
            Route("/v1/payment_intents/{id}", stripe.retrieve, methods=["GET"]),
        ]
    )
    async with serving(app) as url:
        yield url, stripe
