"""POST /webhooks/stripe: raw body and signature in.

200 when processed (now or before) or rejected as not ours; 400 when the signature or its time is wrong
(nothing written) or the signed body is unreadable (recorded); 413 for a body no event is that large; 503
when Stripe or the database cannot answer now (nothing written: Stripe delivers again).
"""

import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from billing.audit.actors import STRIPE, acting_as
from billing.config import Settings
from billing.db import DatabaseBusy
from billing.stripe_gateway import InvalidWebhook, PaymentProviderUnavailable
from billing.stripe_webhooks import service as webhooks
from billing.stripe_webhooks.events import MAX_BODY_BYTES

logger = logging.getLogger(__name__)


class _TooLarge(Exception):
    pass


async def _bounded_body(request: Request) -> bytes:
    """The raw body (the signature covers the exact bytes sent), read no further than any event can be."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _TooLarge
    return bytes(body)


async def stripe_webhook_endpoint(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    try:
        payload = await _bounded_body(request)
    except _TooLarge:
        return JSONResponse({"error": f"the body exceeds {MAX_BODY_BYTES} bytes"}, status_code=413)
    except ClientDisconnect:
        return JSONResponse({"error": "the body was not received"}, status_code=400)
    if request.app.state.stripe is None:
        return JSONResponse({"error": "payments are not configured on this server"}, status_code=503)
    try:
        with acting_as(STRIPE):  # what the event changes, Stripe changed (the audit trail's actor)
            outcome = await webhooks.handle(
                request.app.state.session_factory,
                request.app.state.stripe,
                payload,
                request.headers.get("stripe-signature"),
                future_tolerance=settings.stripe_webhook_future_tolerance_seconds,
            )
    except InvalidWebhook as error:
        logger.warning("stripe webhook refused: %s", error.message)
        return JSONResponse({"error": "invalid signature"}, status_code=400)
    except (PaymentProviderUnavailable, DatabaseBusy):
        # Stripe was needed to confirm a payment (or a card), or the database is saturated: nothing was
        # written, so Stripe's redelivery finds the event new.
        return JSONResponse(
            {"error": "try again"},
            status_code=503,
            headers={"Retry-After": str(settings.retry_after_seconds)},
        )
    if outcome is webhooks.Outcome.MALFORMED:
        return JSONResponse({"error": "the signed body is not a Stripe event we can read"}, status_code=400)
    # A rejected event is acknowledged: it is recorded and logged, and redelivering it cannot change that.
    return JSONResponse(
        {
            "received": True,
            "duplicate": outcome is webhooks.Outcome.DUPLICATE,
            "rejected": outcome is webhooks.Outcome.REJECTED,
        }
    )
