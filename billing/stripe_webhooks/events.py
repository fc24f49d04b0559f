"""Signed Stripe events, read strictly: a valid signature proves who sent the bytes, never what shape they have.

Only the fields a handler acts on are read, each checked for its type and bounds before anything uses it;
whatever else Stripe sends is ignored, so a new field or a newer API version changes nothing. A payload that
fails is a `MalformedEvent` naming the first problem, so the webhook records and refuses it instead of
crashing a handler half-way.
"""

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from billing.stripe_gateway import Card, PaymentIntentState, charge_result

# Stripe's events are a few kilobytes; a body above this is refused before its signature is checked.
MAX_BODY_BYTES = 512 * 1024
# Stripe objects nest a handful of levels (metadata, a card inside a payment method, an expanded object).
MAX_DEPTH = 32
# Stripe's own limits on metadata: 50 keys of up to 40 characters, values of up to 500.
MAX_METADATA_KEYS = 50
# Amounts in minor units: Stripe's largest allowed amount has 8 digits in most currencies, 12 in a few.
MAX_AMOUNT_MINOR = 10**12

_EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]{1,200}")
_EVENT_TYPE = re.compile(r"(?=.{3,100}\Z)[a-z0-9_]+(?:\.[a-z0-9_]+){1,3}")  # the stripe_event.type column
_OBJECT_ID = re.compile(r"[a-z]{1,10}_[A-Za-z0-9_]{1,200}")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_CODE = re.compile(r"[a-z0-9_]{1,100}")  # statuses, decline codes, card brands
_BRAND = re.compile(r"[a-z0-9_]{1,32}")  # the payment_method.brand column
_LAST4 = re.compile(r"[0-9]{4}")
_CLIENT_SECRET = re.compile(r"[A-Za-z0-9_]{1,255}")
# A JSON string (skipped whole, so brackets inside it do not count) or a bracket.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_MAX_INT_DIGITS = 18
_MAX_MESSAGE = 500  # the ledger's failure_message column


class MalformedEvent(Exception):
    """A validly signed body that is not an event we can read. `key` records it once: the event's id when
    that much could be read, else a digest of the body."""

    def __init__(self, reason: str, *, key: str, type_: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.key = key
        self.type = type_


class _Invalid(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ChargeRefunded:
    charge_id: str
    payment_intent_id: str | None
    amount_minor: int
    amount_refunded_minor: int  # cumulative over every refund of the charge
    currency: str  # upper-case


@dataclass(frozen=True)
class PaymentMethodChanged:
    """Attached or updated; `card` is None for a payment method that is not a card."""

    card: Card | None


@dataclass(frozen=True)
class PaymentMethodDetached:
    payment_method_id: str


@dataclass(frozen=True)
class SetupIntentSucceeded:
    payment_method_id: str | None


@dataclass(frozen=True)
class Unhandled:
    """An event type we acknowledge without acting on it; its object is not read (some, such as
    `balance.available`, have no id)."""


EventObject = (
    PaymentIntentState
    | ChargeRefunded
    | PaymentMethodChanged
    | PaymentMethodDetached
    | SetupIntentSucceeded
    | Unhandled
)


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    object: EventObject


def parse_event(payload: bytes) -> Event:
    """The event in a signed body, or MalformedEvent."""
    key, type_ = f"sha256:{hashlib.sha256(payload).hexdigest()}", "(unreadable)"
    try:
        envelope = _Fields(_json(payload), "event")
        key = envelope.text("id", _EVENT_ID)
        type_ = envelope.text("type", _EVENT_TYPE)
        if envelope.optional_text("object", _CODE) not in (None, "event"):
            raise _Invalid("event.object: not an event")
        data = envelope.nested("data")
        parse_object = _OBJECTS.get(type_, _unhandled)
        return Event(id=key, type=type_, object=parse_object(data.nested("object")))
    except _Invalid as error:
        raise MalformedEvent(error.reason, key=key, type_=type_) from None


def _json(payload: bytes) -> object:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise _Invalid("the body is not UTF-8") from None
    _check_depth(text)
    try:
        return json.loads(
            text, parse_int=_bounded_int, parse_constant=_no_constant, object_pairs_hook=_unique_keys
        )
    except ValueError as error:
        raise _Invalid(f"the body is not JSON: {str(error)[:200]}") from None


def _check_depth(text: str) -> None:
    """Refuse deep nesting before json.loads, whose recursion would otherwise hit Python's limit."""
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Invalid(f"the body nests deeper than {MAX_DEPTH} levels")
        elif bracket in ("]", "}"):
            depth -= 1


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > _MAX_INT_DIGITS:
        raise ValueError(f"an integer of more than {_MAX_INT_DIGITS} digits")
    return int(digits)


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    values = dict(pairs)
    if len(values) != len(pairs):
        raise ValueError("an object repeats a key")
    return values


class _Fields:
    """One JSON object of the event, read field by field; `path` names the field in the reasons given."""

    def __init__(self, value: object, path: str) -> None:
        if not isinstance(value, dict):
            raise _Invalid(f"{path}: expected an object")
        self._values: dict[str, object] = value
        self._path = path

    def _fail(self, name: str, expected: str) -> NoReturn:
        raise _Invalid(f"{self._path}.{name}: expected {expected}")

    def optional_text(self, name: str, pattern: re.Pattern[str]) -> str | None:
        value = self._values.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or pattern.fullmatch(value) is None:
            self._fail(name, f"a string matching {pattern.pattern}")
        return value

    def text(self, name: str, pattern: re.Pattern[str]) -> str:
        value = self.optional_text(name, pattern)
        if value is None:
            self._fail(name, "a string")
        return value

    def message(self, name: str) -> str | None:
        """Text meant for people: any string, cut to what the ledger stores."""
        value = self._values.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            self._fail(name, "a string")
        return value[:_MAX_MESSAGE]

    def integer(self, name: str, low: int, high: int) -> int:
        value = self._values.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self._fail(name, f"an integer from {low} to {high}")
        return value

    def optional_nested(self, name: str) -> "_Fields | None":
        value = self._values.get(name)
        return None if value is None else _Fields(value, f"{self._path}.{name}")

    def nested(self, name: str) -> "_Fields":
        fields = self.optional_nested(name)
        if fields is None:
            self._fail(name, "an object")
        return fields

    def reference(self, name: str) -> str | None:
        """The id of another object, which Stripe sends either as its id or expanded."""
        value = self._values.get(name)
        if isinstance(value, dict):
            return _Fields(value, f"{self._path}.{name}").text("id", _OBJECT_ID)
        return self.optional_text(name, _OBJECT_ID)

    def metadata(self) -> dict[str, str]:
        value = self._values.get("metadata")
        if value is None:
            return {}
        if (
            not isinstance(value, dict)
            or len(value) > MAX_METADATA_KEYS
            or not all(isinstance(v, str) and len(k) <= 40 and len(v) <= 500 for k, v in value.items())
        ):
            self._fail("metadata", f"at most {MAX_METADATA_KEYS} short strings")
        return dict(value)


def _currency(fields: _Fields) -> str:
    return fields.text("currency", _CURRENCY).upper()


def _payment_intent(intent: _Fields) -> PaymentIntentState:
    intent_id = intent.text("id", _OBJECT_ID)
    status = intent.text("status", _CODE)
    # Rebuilt from checked fields only, so `charge_result` (shared with the API path) reads nothing unchecked.
    checked: dict[str, object] = {"id": intent_id, "status": status}
    if status == "requires_action":
        checked["client_secret"] = intent.text("client_secret", _CLIENT_SECRET)
    error = intent.optional_nested("last_payment_error")
    if error is not None:
        checked["last_payment_error"] = {
            "code": error.optional_text("code", _CODE),
            "decline_code": error.optional_text("decline_code", _CODE),
            "message": error.message("message"),
        }
    return PaymentIntentState(
        id=intent_id,
        status=status,
        amount_minor=intent.integer("amount", 0, MAX_AMOUNT_MINOR),
        currency=_currency(intent),
        metadata=intent.metadata(),
        charge=charge_result(checked, off_session=False),
    )


def _charge_refunded(charge: _Fields) -> ChargeRefunded:
    amount = charge.integer("amount", 0, MAX_AMOUNT_MINOR)
    return ChargeRefunded(
        charge_id=charge.text("id", _OBJECT_ID),
        payment_intent_id=charge.reference("payment_intent"),
        amount_minor=amount,
        amount_refunded_minor=charge.integer("amount_refunded", 0, amount),
        currency=_currency(charge),
    )


def _payment_method_changed(method: _Fields) -> PaymentMethodChanged:
    method_id = method.text("id", _OBJECT_ID)
    card = method.optional_nested("card")
    if card is None:
        return PaymentMethodChanged(card=None)
    return PaymentMethodChanged(
        card=Card(
            id=method_id,
            customer_id=method.reference("customer"),
            brand=card.text("brand", _BRAND),
            last4=card.text("last4", _LAST4),
            exp_month=card.integer("exp_month", 1, 12),
            exp_year=card.integer("exp_year", 2000, 9999),
        )
    )


def _payment_method_detached(method: _Fields) -> PaymentMethodDetached:
    return PaymentMethodDetached(payment_method_id=method.text("id", _OBJECT_ID))


def _setup_intent_succeeded(intent: _Fields) -> SetupIntentSucceeded:
    intent.text("id", _OBJECT_ID)
    return SetupIntentSucceeded(payment_method_id=intent.reference("payment_method"))


def _unhandled(_obj: _Fields) -> Unhandled:
    return Unhandled()


_OBJECTS: dict[str, Callable[[_Fields], EventObject]] = {
    "payment_intent.succeeded": _payment_intent,
    "payment_intent.payment_failed": _payment_intent,
    "payment_intent.canceled": _payment_intent,
    "charge.refunded": _charge_refunded,
    "payment_method.attached": _payment_method_changed,
    "payment_method.updated": _payment_method_changed,
    "payment_method.detached": _payment_method_detached,
    "setup_intent.succeeded": _setup_intent_succeeded,
}
