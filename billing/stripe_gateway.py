"""The one wrapper around Stripe: async `stripe.StripeClient` calls, Stripe errors mapped to domain errors.

Nothing else in the code base imports `stripe`. Every call has a timeout and network retries; calls that move
money carry an idempotency key derived from our own row id, so a retried request can never charge twice.
"""

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import stripe
from opentelemetry.sdk.trace import TracerProvider

from billing.config import Settings
from billing.errors import DomainError
from billing.observability import metrics, tracing

logger = logging.getLogger(__name__)

# The metadata key that ties a PaymentIntent back to our ledger entry (webhooks and reconciliation use it).
TRANSACTION_ID_KEY = "transaction_id"
ACCOUNT_ID_KEY = "account_id"
# The Stripe-Signature header: `t=<unix time>,v1=<hex HMAC-SHA256>[,v1=...]`, bounded before it is split.
_MAX_SIGNATURE_HEADER = 4096
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
# The decline code of a charge whose PaymentIntent was canceled rather than refused.
CANCELED_CODE = "canceled"

# What the client is told. Stripe documents the `message` of a `card_error` as fit to show the customer
# (https://docs.stripe.com/api/errors: "For card errors, these messages can be shown to your users"), so a decline
# keeps it; any other Stripe text can name customer and card ids, parameters or Stripe's URLs, so it is replaced by
# a fixed text per kind of refusal and logged in full, with Stripe's request id, at WARNING.
DECLINED_MESSAGE = "The card was declined; try another card, or ask your bank why."
REFUSED_MISSING = (
    "it has no record of the customer or card this needs (removed in Stripe?); reload the page and add the card "
    "again if it is gone."
)
REFUSED_CARD = "it cannot use this card for that; try another card."
REFUSED_OTHER = "retrying it unchanged will not help; contact support if it persists."


class PaymentProviderUnavailable(DomainError):
    """Stripe could not be reached, timed out, rate-limited us or failed on its side: try again later."""

    def __init__(
        self, message: str = "The payment provider is unavailable; please try again shortly."
    ) -> None:
        super().__init__(message)


class CardDeclined(DomainError):
    def __init__(
        self,
        code: str,
        decline_code: str | None,
        message: str,
        *,
        payment_intent_id: str | None = None,
        client_secret: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.decline_code = decline_code
        # Stripe names the PaymentIntent a confirmation failed on (localstripe does not).
        self.payment_intent_id = payment_intent_id
        self.client_secret = client_secret


class PaymentProviderRejected(DomainError):
    """Stripe refused the request itself (an unknown payment method, a bad parameter)."""


class InvalidWebhook(DomainError):
    """A webhook whose signature fails, whose timestamp is too old, or whose body is not an event."""


@dataclass(frozen=True)
class ChargeResult:
    status: Literal["succeeded", "requires_action", "processing", "declined"]
    payment_intent_id: str | None
    client_secret: str | None  # for requires_action (3-D Secure)
    decline_code: str | None  # e.g. "insufficient_funds", "authentication_required"
    message: str | None


# Which of several PaymentIntents for one entry tells how it ended (lower is further along).
_PROGRESS = {"succeeded": 0, "processing": 1, "requires_action": 2, "declined": 3}


@dataclass(frozen=True)
class PaymentIntentState:
    """What we read back about a PaymentIntent (reconciliation, retries)."""

    id: str
    status: str  # Stripe's raw status
    amount_minor: int
    currency: str  # upper-case ISO 4217, as we store it
    metadata: dict[str, str]
    charge: ChargeResult


@dataclass(frozen=True)
class Card:
    """A card payment method as the local mirror needs it."""

    id: str
    customer_id: str | None
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class CustomerAddress:
    line1: str
    line2: str | None
    city: str
    postal_code: str
    region: str | None
    country: str


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """One Stripe operation: timed for /metrics (latency and outcome), its errors made domain errors."""
    with metrics.stripe_call(operation), _as_domain_errors(operation):
        yield


@contextmanager
def _as_domain_errors(operation: str) -> Iterator[None]:
    """Stripe's exceptions in, domain errors out; nothing from the SDK leaks past this module."""
    try:
        yield
    except stripe.CardError as error:
        detail = error.error
        intent = detail.payment_intent if detail is not None else None
        logger.info("stripe %s: declined: %s", operation, _detail(error))
        raise CardDeclined(
            error.code or "card_declined",
            detail.decline_code if detail is not None else None,
            _decline_message(detail.type if detail is not None else None, error.user_message),
            payment_intent_id=_id_of(intent),
            client_secret=intent.client_secret if intent is not None else None,
        ) from None
    except (stripe.APIConnectionError, stripe.RateLimitError) as error:
        logger.warning("stripe %s: unreachable or rate-limited: %s", operation, error)
        raise PaymentProviderUnavailable() from error
    except (stripe.AuthenticationError, stripe.PermissionError) as error:
        # Our configuration is wrong; the customer can only wait, operators must look at the log.
        logger.error("stripe %s: credentials rejected: %s", operation, error)
        raise PaymentProviderUnavailable() from error
    except stripe.StripeError as error:
        if error.http_status is None or error.http_status >= 500:
            logger.warning("stripe %s: server error %s: %s", operation, error.http_status, error)
            raise PaymentProviderUnavailable() from error
        logger.warning("stripe %s: refused: %s", operation, _detail(error))
        raise PaymentProviderRejected(
            f"The payment provider refused to {operation}: {_refusal_reason(error)}"
        ) from None


def _detail(error: stripe.StripeError) -> str:
    """Everything Stripe said about a failed request, for the log only."""
    detail = error.error
    return (
        f"HTTP {error.http_status}, type {detail.type if detail is not None else None}, code {error.code}, "
        f"decline code {detail.decline_code if detail is not None else None}, "
        f"param {detail.param if detail is not None else None}, request {error.request_id}: {error.user_message}"
    )


def _refusal_reason(error: stripe.StripeError) -> str:
    """The fixed text for this kind of refusal (Stripe's own text stays in the log)."""
    code = error.code or ""
    if code == "resource_missing" or error.http_status == 404:
        return REFUSED_MISSING
    if code.startswith("payment_method_"):  # e.g. payment_method_unactivated, payment_method_not_available
        return REFUSED_CARD
    return REFUSED_OTHER


def _decline_message(error_type: str | None, message: str | None) -> str:
    """Stripe's text for a card error, which it writes for the customer; a fixed text for anything else."""
    return message if error_type == "card_error" and message else DECLINED_MESSAGE


def _id_of(value: Any) -> str | None:
    """An id whether Stripe sent the object expanded or as its id."""
    if value is None or isinstance(value, str):
        return value
    return str(value["id"])


def card_from_stripe(payment_method: dict[str, Any]) -> Card:
    card = payment_method["card"]
    return Card(
        id=payment_method["id"],
        customer_id=_id_of(payment_method.get("customer")),
        brand=str(card["brand"]),
        last4=str(card["last4"]),
        exp_month=int(card["exp_month"]),
        exp_year=int(card["exp_year"]),
    )


def charge_result(intent: dict[str, Any], *, off_session: bool) -> ChargeResult:
    """A PaymentIntent's status as the outcome of a charge."""
    status = intent["status"]
    intent_id = intent["id"]
    if status == "succeeded":
        return ChargeResult("succeeded", intent_id, None, None, None)
    if status == "requires_action":
        # Off-session nobody is there to authenticate: Stripe calls that `authentication_required`.
        code = "authentication_required" if off_session else None
        return ChargeResult("requires_action", intent_id, intent["client_secret"], code, None)
    if status in ("processing", "requires_capture", "requires_confirmation"):
        return ChargeResult("processing", intent_id, None, None, None)
    if status == "canceled":
        return ChargeResult("declined", intent_id, None, CANCELED_CODE, "The payment was canceled.")
    error = intent.get("last_payment_error") or {}
    code = error.get("decline_code") or error.get("code") or status
    return ChargeResult(
        "declined", intent_id, None, code, _decline_message(error.get("type"), error.get("message"))
    )


def _declined(declined: CardDeclined) -> ChargeResult:
    code = declined.decline_code or declined.code
    if code == "authentication_required" and declined.client_secret is not None:
        # An off-session charge the bank wants authenticated: the customer can finish it with the secret.
        return ChargeResult(
            "requires_action", declined.payment_intent_id, declined.client_secret, code, declined.message
        )
    return ChargeResult("declined", declined.payment_intent_id, None, code, declined.message)


def _intent_state(intent: dict[str, Any]) -> PaymentIntentState:
    return PaymentIntentState(
        id=intent["id"],
        status=intent["status"],
        amount_minor=int(intent["amount"]),
        currency=str(intent["currency"]).upper(),
        metadata={str(k): str(v) for k, v in (intent.get("metadata") or {}).items()},
        charge=charge_result(intent, off_session=False),
    )


# The SDK sleeps between retries, at most this long each (stripe._http_client.HTTPClient.MAX_DELAY).
_RETRY_DELAY_SECONDS = 5.0


def longest_call(settings: Settings) -> timedelta:
    """How long one call may still be on its way to Stripe, retries included: until then, Stripe not knowing
    of a charge does not mean it will never be made."""
    attempts = settings.stripe_max_network_retries + 1
    return timedelta(
        seconds=attempts * settings.stripe_timeout_seconds + (attempts - 1) * _RETRY_DELAY_SECONDS
    )


class StripeGateway:
    def __init__(
        self, client: stripe.StripeClient, *, webhook_secret: str | None, webhook_tolerance: int
    ) -> None:
        self._v1 = client.v1
        self._webhook_secret = webhook_secret
        self._webhook_tolerance = webhook_tolerance

    @classmethod
    def from_settings(
        cls, settings: Settings, *, tracer_provider: TracerProvider | None = None
    ) -> "StripeGateway":
        """`tracer_provider`: trace each HTTP request to Stripe (billing.observability.tracing)."""
        if not settings.stripe_secret_key:
            raise ValueError("STRIPE_SECRET_KEY is not set")
        http_client = stripe.HTTPXClient(timeout=settings.stripe_timeout_seconds)
        if tracer_provider is not None:
            # The SDK builds its httpx client itself and offers no way to pass one in.
            tracing.trace_http_client(http_client._client_async, tracer_provider)
        client = stripe.StripeClient(
            settings.stripe_secret_key,
            base_addresses={"api": settings.stripe_api_base} if settings.stripe_api_base else None,
            http_client=http_client,
            max_network_retries=settings.stripe_max_network_retries,
        )
        return cls(
            client,
            webhook_secret=settings.stripe_webhook_secret,
            webhook_tolerance=settings.stripe_webhook_tolerance_seconds,
        )

    async def ensure_customer(
        self,
        *,
        customer_id: str | None,
        name: str,
        phone: str | None,
        address: CustomerAddress | None,
        account_id: int,
    ) -> str:
        """Create the customer or bring its name, phone and address up to date; returns its id."""
        params: dict[str, Any] = {"name": name}
        if phone is not None:
            params["phone"] = phone
        if address is not None:
            params["address"] = {
                "line1": address.line1,
                "line2": address.line2 or "",
                "city": address.city,
                "postal_code": address.postal_code,
                "state": address.region or "",
                "country": address.country,
            }
        with _translated("save the customer"):
            if customer_id is None:
                params["metadata"] = {ACCOUNT_ID_KEY: str(account_id)}
                customer = await self._v1.customers.create_async(
                    params,  # type: ignore[arg-type]  # built up field by field
                    {"idempotency_key": f"customer-account-{account_id}"},
                )
            else:
                customer = await self._v1.customers.update_async(customer_id, params)  # type: ignore[arg-type]
        return customer.id

    async def create_setup_intent(self, customer_id: str) -> str:
        """A SetupIntent for saving a card for later off-session use; returns its client secret."""
        with _translated("start saving a card"):
            intent = await self._v1.setup_intents.create_async(
                {"customer": customer_id, "usage": "off_session"}
            )
        assert intent.client_secret is not None
        return intent.client_secret

    async def retrieve_card(self, payment_method_id: str) -> Card:
        with _translated("read the card"):
            method = await self._v1.payment_methods.retrieve_async(payment_method_id)
        if method.card is None:
            raise PaymentProviderRejected("only cards are supported")
        return card_from_stripe(method.to_dict())

    async def attach_card(self, payment_method_id: str, customer_id: str) -> Card:
        with _translated("attach the card"):
            method = await self._v1.payment_methods.attach_async(payment_method_id, {"customer": customer_id})
        return card_from_stripe(method.to_dict())

    async def set_default_card(self, customer_id: str, payment_method_id: str) -> None:
        """The card Stripe's invoices and the customer portal show as the default."""
        with _translated("make the card the default"):
            await self._v1.customers.update_async(
                customer_id, {"invoice_settings": {"default_payment_method": payment_method_id}}
            )

    async def detach_card(self, payment_method_id: str) -> None:
        with _translated("remove the card"):
            await self._v1.payment_methods.detach_async(payment_method_id)

    async def list_cards(self, customer_id: str) -> list[Card]:
        with _translated("list the cards"):
            page = await self._v1.payment_methods.list_async({"customer": customer_id, "type": "card"})
            return [card_from_stripe(method.to_dict()) async for method in page.auto_paging_iter()]

    async def charge(
        self,
        *,
        customer_id: str,
        payment_method: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        off_session: bool,
        description: str,
        metadata: dict[str, str],
    ) -> ChargeResult:
        """Create and confirm a PaymentIntent. Declines come back as a result, not an exception."""
        params: dict[str, Any] = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "customer": customer_id,
            "payment_method": payment_method,
            "payment_method_types": ["card"],
            "confirm": True,
            "off_session": off_session,
            # Kept in metadata: localstripe rejects a `description` parameter, and Stripe shows metadata too.
            "metadata": {**metadata, "description": description},
        }
        try:
            with _translated("charge the card"):
                intent = await self._v1.payment_intents.create_async(
                    params,  # type: ignore[arg-type]
                    {"idempotency_key": idempotency_key},
                )
            result = charge_result(intent.to_dict(), off_session=off_session)
        except CardDeclined as declined:
            result = _declined(declined)
        logger.info("stripe charge %s: %s (%s)", idempotency_key, result.status, result.payment_intent_id)
        return result

    async def cancel_payment_intent(self, payment_intent_id: str) -> PaymentIntentState:
        with _translated("cancel the payment"):
            intent = await self._v1.payment_intents.cancel_async(payment_intent_id)
        return _intent_state(intent.to_dict())

    async def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntentState:
        with _translated("read the payment"):
            intent = await self._v1.payment_intents.retrieve_async(payment_intent_id)
        return _intent_state(intent.to_dict())

    async def find_payment_intent(
        self, *, customer_id: str, transaction_id: int, created_after: datetime
    ) -> PaymentIntentState | None:
        """The PaymentIntent charged for our ledger entry, when we never learnt its id (a crash mid-charge).

        Asked before charging an entry again, so a charge is sent at most once whatever Stripe remembers of
        idempotency keys. Found through the customer's charges since the entry was created (each names its
        PaymentIntent, whose metadata names our entry): the charges list works on Stripe and on localstripe,
        is read-after-write consistent (search is not), and lists every PaymentIntent that took or may take
        money; one without a charge (never confirmed, or waiting for 3-D Secure nobody was shown) moved none.
        When several match, the one furthest along wins: a success over a pending one over a failure.
        """
        seen: set[str] = set()
        found: list[PaymentIntentState] = []
        with _translated("look up the payment"):
            page = await self._v1.charges.list_async(
                {
                    "customer": customer_id,
                    "created": {"gt": int(created_after.timestamp()) - 60},
                    "limit": 100,
                }
            )
            async for charge in page.auto_paging_iter():
                intent_id = _id_of(charge.payment_intent)
                if intent_id is None or intent_id in seen:
                    continue
                seen.add(intent_id)
                state = await self.retrieve_payment_intent(intent_id)
                if state.metadata.get(TRANSACTION_ID_KEY) == str(transaction_id):
                    found.append(state)
        return min(found, key=lambda state: _PROGRESS[state.charge.status], default=None)

    async def create_portal_session(self, customer_id: str, return_url: str) -> str:
        with _translated("open the billing portal"):
            session = await self._v1.billing_portal.sessions.create_async(
                {"customer": customer_id, "return_url": return_url}
            )
        return session.url

    def verify_webhook_signature(
        self, payload: bytes, signature_header: str | None, *, future_tolerance: int
    ) -> None:
        """Check Stripe's signature on the raw body and when it was signed; the body itself is not read here.

        Verified over the bytes, as Stripe signs them: the SDK's `verify_header` decodes the body as UTF-8
        first (a signed body that is not UTF-8 would crash it) and only refuses timestamps in the past.
        Here a timestamp more than `future_tolerance` seconds ahead of our clock is refused too.
        """
        if not self._webhook_secret:
            raise InvalidWebhook("no webhook secret is configured")
        header = signature_header or ""
        if len(header) > _MAX_SIGNATURE_HEADER:
            raise InvalidWebhook("the Stripe-Signature header is too long")
        fields = [item.strip().partition("=") for item in header.split(",")]
        timestamps = [value for name, _, value in fields if name == "t"]
        signatures = [value for name, _, value in fields if name == "v1" and _SIGNATURE.fullmatch(value)]
        if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]) or not signatures:
            raise InvalidWebhook("the Stripe-Signature header has no timestamp or no v1 signature")
        signed = timestamps[0].encode() + b"." + payload
        expected = hmac.new(self._webhook_secret.encode(), signed, hashlib.sha256).hexdigest()
        if not any(hmac.compare_digest(expected, signature) for signature in signatures):
            raise InvalidWebhook("no signature matches the body")
        signed_at, now = int(timestamps[0]), time.time()
        if signed_at < now - self._webhook_tolerance:
            raise InvalidWebhook(f"signed {int(now) - signed_at} s ago, beyond the tolerance")
        if signed_at > now + future_tolerance:
            raise InvalidWebhook(f"signed {signed_at - int(now)} s in the future, beyond the tolerance")
