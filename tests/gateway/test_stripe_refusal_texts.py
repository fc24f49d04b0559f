"""What a client is told when Stripe refuses: a fixed text per kind of refusal, never Stripe's own text (which can
name customer and card ids and internal URLs); that text is logged at WARNING with Stripe's request id. A card
error keeps Stripe's message, which Stripe documents as written for the customer.

Through the real SDK and gateway against stub Stripe APIs on loopback (tests/support/stripe_refusals.py).
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from billing import stripe_gateway
from billing.stripe_gateway import PaymentProviderRejected, StripeGateway, charge_result
from tests.support.loopback import serving
from tests.support.stripe_refusals import LEAKS, REQUEST_ID, rejecting
from tests.support.stripe_server import stripe_settings


async def test_a_refusal_is_a_fixed_text_and_stripes_own_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="billing.stripe_gateway")
    async with rejecting() as url:
        gateway = StripeGateway.from_settings(stripe_settings(url))
        with pytest.raises(PaymentProviderRejected) as refused:
            await gateway.create_portal_session("cus_ABC123", "http://localhost/billing")

    assert refused.value.message == (
        f"The payment provider refused to open the billing portal: {stripe_gateway.REFUSED_OTHER}"
    )
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    logged = record.getMessage()
    assert all(leak in logged for leak in LEAKS), logged
    assert REQUEST_ID["Request-Id"] in logged


@asynccontextmanager
async def answering(response: JSONResponse | PlainTextResponse) -> AsyncIterator[StripeGateway]:
    async def answer(_: Request) -> JSONResponse | PlainTextResponse:
        return response

    async with serving(Starlette(routes=[Route("/{path:path}", answer, methods=["POST"])])) as url:
        yield StripeGateway.from_settings(stripe_settings(url))


def _error(status: int, **fields: str) -> JSONResponse:
    return JSONResponse({"error": {"type": "invalid_request_error", **fields}}, status)


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        # What localstripe answered for the billing portal before the stand-in had one: not even JSON.
        (PlainTextResponse("404: Not Found", 404), stripe_gateway.REFUSED_MISSING),
        (
            _error(400, code="resource_missing", message="No such customer: 'cus_ABC123'"),
            stripe_gateway.REFUSED_MISSING,
        ),
        (
            _error(400, code="payment_method_unactivated", message="pm_ABC123 is not activated"),
            stripe_gateway.REFUSED_CARD,
        ),
        (
            _error(400, code="parameter_unknown", message="Received unknown parameter: x"),
            stripe_gateway.REFUSED_OTHER,
        ),
    ],
)
async def test_each_kind_of_refusal_has_its_text(
    response: JSONResponse | PlainTextResponse, reason: str
) -> None:
    async with answering(response) as gateway:
        with pytest.raises(PaymentProviderRejected) as refused:
            await gateway.create_portal_session("cus_ABC123", "http://localhost/billing")
    assert refused.value.message == f"The payment provider refused to open the billing portal: {reason}"


def _declined_intent(error: dict[str, str]) -> dict[str, object]:
    return {"id": "pi_1", "status": "requires_payment_method", "last_payment_error": error}


def test_a_decline_keeps_only_a_card_errors_text() -> None:
    card_error = {"type": "card_error", "decline_code": "expired_card", "message": "Your card has expired."}
    other = {
        "type": "invalid_request_error",
        "code": "x",
        "message": "pm_ABC123 failed, see https://internal/",
    }

    kept = charge_result(_declined_intent(card_error), off_session=True)
    replaced = charge_result(_declined_intent(other), off_session=True)
    assert (kept.decline_code, kept.message) == ("expired_card", "Your card has expired.")
    assert (replaced.decline_code, replaced.message) == ("x", stripe_gateway.DECLINED_MESSAGE)
