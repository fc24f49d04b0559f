"""A stub Stripe API for what localstripe cannot do, spoken to over HTTP by the real SDK and gateway.

- Idempotency: like Stripe, a repeated `Idempotency-Key` replays the first response and charges nothing new
  (localstripe ignores the header).
- Off-session charges the bank wants authenticated fail with a `card_error` whose code is
  `authentication_required` and whose PaymentIntent carries the client secret (localstripe answers
  `requires_action` instead).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from billing.stripe_gateway import StripeGateway
from tests.support.loopback import form, serving
from tests.support.stripe_server import stripe_settings

Outcome = Literal["succeeded", "authentication_required"]


class PaymentIntentsStub:
    def __init__(self, outcome: Outcome = "succeeded") -> None:
        self.outcome = outcome
        self.keys: list[str | None] = []  # the Idempotency-Key of every create request, in order
        self._responses: dict[str, tuple[int, dict[str, Any]]] = {}

    @property
    def charges(self) -> int:
        """Distinct charges: replays of a key are not charges."""
        return len(self._responses)

    async def create(self, request: Request) -> JSONResponse:
        key = request.headers.get("idempotency-key")
        self.keys.append(key)
        if key is None:
            return JSONResponse({"error": {"type": "invalid_request_error", "message": "no key"}}, 400)
        if key not in self._responses:
            self._responses[key] = self._respond(len(self._responses) + 1, form(await request.body()))
        status, body = self._responses[key]
        return JSONResponse(
            body, status, headers={"Idempotent-Replayed": "true"} if len(self.keys) > 1 else {}
        )

    def _respond(self, number: int, fields: dict[str, str]) -> tuple[int, dict[str, Any]]:
        intent: dict[str, Any] = {
            "id": f"pi_stub_{number}",
            "object": "payment_intent",
            "amount": int(fields["amount"]),
            "currency": fields["currency"],
            "customer": fields["customer"],
            "payment_method": fields["payment_method"],
            "client_secret": f"pi_stub_{number}_secret_stub",
            "metadata": {name[9:-1]: value for name, value in fields.items() if name.startswith("metadata[")},
            "status": "succeeded",
            "last_payment_error": None,
        }
        if self.outcome == "succeeded":
            return 200, intent
        intent["status"] = "requires_payment_method"
        error = {
            "type": "card_error",
            "code": "authentication_required",
            "decline_code": "authentication_required",
            "message": "Your card was declined. This transaction requires authentication.",
            "payment_intent": intent,
        }
        return 402, {"error": error}


@asynccontextmanager
async def stub_gateway(
    outcome: Outcome = "succeeded",
) -> AsyncIterator[tuple[StripeGateway, PaymentIntentsStub]]:
    """A real StripeGateway pointed at a stub that knows only POST /v1/payment_intents."""
    stub = PaymentIntentsStub(outcome)
    app = Starlette(routes=[Route("/v1/payment_intents", stub.create, methods=["POST"])])
    async with serving(app) as url:
        yield StripeGateway.from_settings(stripe_settings(url)), stub
