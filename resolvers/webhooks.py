"""POST /webhooks/stripe: raw body and signature in; 200 when applied (now or before), 400 when forged."""

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse

from billing import webhooks
from billing.stripe_gateway import InvalidWebhook, PaymentProviderUnavailable

logger = logging.getLogger(__name__)


async def stripe_webhook_endpoint(request: Request) -> JSONResponse:
    # The signature covers the exact bytes Stripe sent, so the body is read raw, never re-serialised.
    payload = await request.body()
    if request.app.state.stripe is None:
        return JSONResponse({"error": "payments are not configured on this server"}, status_code=503)
    try:
        applied = await webhooks.handle(
            request.app.state.session_factory,
            request.app.state.stripe,
            payload,
            request.headers.get("stripe-signature"),
        )
    except InvalidWebhook as error:
        logger.warning("stripe webhook refused: %s", error.message)
        return JSONResponse({"error": "invalid signature or payload"}, status_code=400)
    except PaymentProviderUnavailable:
        # A handler needed Stripe (setup_intent.succeeded reads the card): ask Stripe to deliver again later.
        return JSONResponse({"error": "try again"}, status_code=503)
    return JSONResponse({"received": True, "duplicate": not applied})
