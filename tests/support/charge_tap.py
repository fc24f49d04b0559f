"""A pass-through proxy in front of localstripe, one per process, that can hold a charge's answer.

The fault test points each gateway and worker at its own tap. Armed, a tap forwards the next
`POST /v1/payment_intents` to localstripe (so the card IS charged) and keeps the answer back until released:
the test kills the process while its charge is in that window, the crash between "Stripe charged" and "we
recorded it" that reconciliation and the recharge engine must heal. Unarmed, it only forwards.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.loopback import serving

CHARGE_PATH = "/v1/payment_intents"
# Hop-by-hop or recomputed headers: httpx sets them again on each side.
_DROPPED = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


class ChargeTap:
    def __init__(self, upstream: httpx.AsyncClient) -> None:
        self._upstream = upstream
        self._armed = False
        self.holding = asyncio.Event()  # a charge went through and its answer is being held back
        self._release = asyncio.Event()
        self.held_payment_intent: str | None = None
        self.url = ""

    def arm(self) -> None:
        """Hold back the answer of the next charge (until `release`)."""
        self._armed = True

    def release(self) -> None:
        self._release.set()

    async def forward(self, request: Request) -> Response:
        upstream = await self._upstream.request(
            request.method,
            request.url.path,
            params=list(request.query_params.multi_items()),
            content=await request.body(),
            headers={k: v for k, v in request.headers.items() if k.lower() not in _DROPPED},
        )
        if self._armed and request.method == "POST" and request.url.path == CHARGE_PATH:
            self._armed = False
            self.held_payment_intent = str(upstream.json().get("id"))
            self.holding.set()
            await self._release.wait()
        return Response(
            upstream.content,
            upstream.status_code,
            headers={k: v for k, v in upstream.headers.items() if k.lower() not in _DROPPED},
        )


@asynccontextmanager
async def charge_tap(stripe_url: str) -> AsyncIterator[ChargeTap]:
    """A tap serving on a free loopback port (its base URL in `.url`) while the block runs."""
    async with httpx.AsyncClient(base_url=stripe_url, timeout=30) as upstream:
        tap = ChargeTap(upstream)
        methods = ["GET", "POST", "DELETE"]
        app = Starlette(routes=[Route("/{path:path}", tap.forward, methods=methods)])
        async with serving(app) as url:
            tap.url = url
            try:
                yield tap
            finally:
                tap.release()  # a held answer would keep the server from shutting down
