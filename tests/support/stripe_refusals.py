"""Stripe APIs that refuse, spoken to over HTTP by the real SDK and gateway: what localstripe cannot be made to do
for every request (see tests/support/stripe_stub.py for the idempotency and off-session stub).

- `rejecting`: every request answers 400 `invalid_request_error` (an unknown id, a bad parameter), its text
  naming a customer id and an internal URL as Stripe's own texts can (`LEAKS`: none may reach a client).
- `declining`: the bank declines every card: saving one (`attach`) and charging one (a PaymentIntent) answer
  402 `card_error`, as Stripe does; reading a card answers a card no customer has yet, so attaching is tried.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.loopback import serving

LEAKS = ("cus_ABC123", "https://internal.stripe.example/")
INVALID_REQUEST = {
    "type": "invalid_request_error",
    "message": f"No such object on customer '{LEAKS[0]}'; see {LEAKS[1]}logs/1",
}
# The header Stripe names each request with (the SDK's `request_id`), logged with a refusal.
REQUEST_ID = {"Request-Id": "req_stub_refusal"}
CARD_DECLINED = {
    "type": "card_error",
    "code": "card_declined",
    "decline_code": "insufficient_funds",
    "message": "Your card has insufficient funds.",
}


async def _reject(_: Request) -> JSONResponse:
    return JSONResponse({"error": INVALID_REQUEST}, 400, headers=REQUEST_ID)


async def _decline(_: Request) -> JSONResponse:
    return JSONResponse({"error": CARD_DECLINED}, 402)


async def _unattached_card(request: Request) -> JSONResponse:
    card = {"brand": "visa", "last4": "0002", "exp_month": 12, "exp_year": 2031}
    return JSONResponse(
        {"id": request.path_params["id"], "object": "payment_method", "customer": None, "card": card}
    )


_EVERY_METHOD = ["GET", "POST", "DELETE"]


@asynccontextmanager
async def rejecting() -> AsyncIterator[str]:
    """The base URL of a Stripe that rejects every request."""
    app = Starlette(routes=[Route("/{path:path}", _reject, methods=_EVERY_METHOD)])
    async with serving(app) as url:
        yield url


@asynccontextmanager
async def declining() -> AsyncIterator[str]:
    """The base URL of a Stripe whose banks decline every card."""
    app = Starlette(
        routes=[
            Route("/v1/payment_methods/{id}", _unattached_card, methods=["GET"]),
            Route("/{path:path}", _decline, methods=_EVERY_METHOD),
        ]
    )
    async with serving(app) as url:
        yield url
