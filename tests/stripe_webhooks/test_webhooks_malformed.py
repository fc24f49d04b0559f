"""Signed webhook bodies of every wrong shape: answered 400 (never 500), recorded once as rejected, nothing else.

The signature proves Stripe (or whoever holds the secret) sent the bytes, not that they are an event we can
read. Bodies are signed here over their raw bytes, as Stripe signs them, so non-JSON and non-UTF-8 bodies are
validly signed too. Besides the named cases, a walk replaces every field of a few well-formed events by each
wrong kind of value and requires a typed answer every time.
"""

import copy
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.stripe_webhooks.events import MAX_BODY_BYTES
from models import PaymentMethod
from models.stripe_webhooks import StripeEventOutcome
from tests.support.webhook_helpers import (
    deliver,
    event,
    ledger_entries,
    new_event_id,
    recorded,
    stored_events,
)


def intent(**changes: Any) -> dict[str, Any]:
    return {
        "id": "pi_shape",
        "object": "payment_intent",
        "status": "succeeded",
        "amount": 1_000,
        "currency": "usd",
        "metadata": {},
        **changes,
    }


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"a": value}
    return value


def digest_key(payload: bytes) -> str:
    return f"sha256:{hashlib.sha256(payload).hexdigest()}"


def raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def with_id(body: dict[str, Any]) -> tuple[bytes, str]:
    """A malformed event whose id can still be read: it is recorded under that id."""
    return raw(body), body["id"]


def without_id(payload: bytes) -> tuple[bytes, str]:
    """A signed body whose event id cannot be read: recorded under a digest of the body."""
    return payload, digest_key(payload)


CASES: dict[str, tuple[bytes, str]] = {
    "data.object is a string": with_id(event("payment_intent.succeeded", "pi_string")),  # type: ignore[arg-type]
    "object without id": with_id(
        event("payment_intent.succeeded", {k: v for k, v in intent().items() if k != "id"})
    ),
    # Refused before it is parsed, so even its id is not read.
    "deep nesting inside an object": without_id(
        raw(event("payment_intent.succeeded", intent(metadata=nested(40))))
    ),
    "JSON nested 1,000 deep": without_id(b"[" * 1_000 + b"]" * 1_000),
    "an event nested 1,000 deep": without_id(
        b'{"id": "evt_deep", "type": "payment_intent.succeeded", "data": {"object": '
        + b'{"a": ' * 1_000
        + b"1"
        + b"}" * 1_000
        + b"}}"
    ),
    "amount as a string": with_id(event("payment_intent.succeeded", intent(amount="1000"))),
    "amount as a boolean": with_id(event("payment_intent.succeeded", intent(amount=True))),
    "negative amount": with_id(event("payment_intent.succeeded", intent(amount=-5))),
    "status as a number": with_id(event("payment_intent.succeeded", intent(status=5))),
    "metadata value a number": with_id(
        event("payment_intent.succeeded", intent(metadata={"transaction_id": 1}))
    ),
    "metadata a list": with_id(event("payment_intent.succeeded", intent(metadata=["transaction_id"]))),
    "type longer than its column": with_id(event("payment_intent." + "x" * 120, intent())),
    "currency of four letters": with_id(event("payment_intent.succeeded", intent(currency="usdt"))),
    "3-D Secure without its client secret": with_id(
        event("payment_intent.succeeded", intent(status="requires_action"))
    ),
    "refund of more than the charge": with_id(
        event(
            "charge.refunded",
            {
                "id": "ch_1",
                "payment_intent": "pi_1",
                "amount": 100,
                "amount_refunded": 200,
                "currency": "usd",
            },
        )
    ),
    "card with a bad last4": with_id(
        event(
            "payment_method.attached",
            {"id": "pm_1", "card": {"brand": "visa", "last4": "42", "exp_month": 1, "exp_year": 2030}},
        )
    ),
    "missing amount": with_id(
        event("payment_intent.succeeded", {k: v for k, v in intent().items() if k != "amount"})
    ),
    "missing data": with_id({"id": new_event_id(), "object": "event", "type": "payment_intent.succeeded"}),
    "missing type": with_id({"id": new_event_id(), "data": {"object": intent()}}),
    "id of another shape": without_id(raw({**event("payment_intent.succeeded", intent()), "id": 42})),
    "an array": without_id(b"[]"),
    "not JSON": without_id(b"hello, webhook"),
    "empty": without_id(b""),
    "not UTF-8": without_id(b'{"id": "evt_\xff\xfe", "type": "x.y"}'),
    "an integer of 5,000 digits": without_id(b'{"id": "evt_big", "n": ' + b"9" * 5_000 + b"}"),
    "NaN": without_id(b'{"id": "evt_nan", "n": NaN}'),
    "a key twice": without_id(b'{"id": "evt_twice", "id": "evt_twice_2", "type": "a.b", "data": {}}'),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_malformed_signed_event_is_rejected_once_and_answered_400(
    case: str, session: AsyncSession, webhook_client: httpx.AsyncClient
) -> None:
    payload, key = CASES[case]
    events, entries = await stored_events(session), await ledger_entries(session)
    first = await deliver(webhook_client, payload)
    again = await deliver(webhook_client, payload)
    assert (first.status_code, again.status_code) == (400, 400), first.text
    record = await recorded(session, key)
    assert record is not None and record.outcome == StripeEventOutcome.REJECTED
    assert record.rejection_reason
    assert await stored_events(session) == events + 1  # once, however often it is replayed
    assert await ledger_entries(session) == entries


async def test_a_body_larger_than_any_event_is_refused_unread(
    session: AsyncSession, webhook_client: httpx.AsyncClient
) -> None:
    events = await stored_events(session)
    huge = raw(event("payment_intent.succeeded", intent(padding="x" * MAX_BODY_BYTES)))
    assert (await deliver(webhook_client, huge)).status_code == 413
    assert await stored_events(session) == events


# Well-formed events, each readable as it stands; the walk below breaks them one field at a time.
BASES: list[dict[str, Any]] = [
    event(
        "payment_intent.payment_failed",
        intent(
            status="requires_payment_method",
            metadata={"transaction_id": "1", "account_id": "1"},
            client_secret="pi_shape_secret_x",
            last_payment_error={"code": "card_declined", "decline_code": "generic_decline", "message": "no"},
        ),
    ),
    event(
        "charge.refunded",
        {
            "id": "ch_shape",
            "payment_intent": "pi_shape",
            "amount": 1_000,
            "amount_refunded": 5,
            "currency": "usd",
        },
    ),
    event(
        "payment_method.attached",
        {
            "id": "pm_shape",
            "customer": {"id": "cus_shape"},
            "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2030},
        },
    ),
]
# One of each kind: null, a string too long for any field (and not an id, code or number), a negative number,
# a boolean (an int to Python), an array, an object.
WRONG_VALUES: list[Any] = [None, "ü" * 600, -1, True, ["x"], {"a": {}}]
_MISSING = object()


def paths(value: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from paths(child, (*prefix, key))


def replaced(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    parent = changed
    for key in path[:-1]:
        parent = parent[key]
    if value is _MISSING:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    if path != ("id",):
        changed["id"] = new_event_id()  # each variant is its own event
    return changed


async def test_every_field_of_every_handled_event_in_every_wrong_shape_gets_a_typed_answer(
    session: AsyncSession, webhook_client: httpx.AsyncClient
) -> None:
    entries = await ledger_entries(session)
    answers: dict[int, int] = {}
    for base in BASES:
        for path in paths(base):
            for value in [_MISSING, *WRONG_VALUES]:
                body = replaced(base, path, value)
                response = await deliver(webhook_client, body)
                answers[response.status_code] = answers.get(response.status_code, 0) + 1
                assert response.status_code in (200, 400), (path, value, response.text)
                if response.status_code == 400:
                    # Recorded under the event's id when that much was readable, else under the body's digest.
                    keys = [digest_key(raw(body)), *([body["id"]] if isinstance(body.get("id"), str) else [])]
                    records = [await recorded(session, key) for key in keys]
                    assert any(r is not None and r.outcome == StripeEventOutcome.REJECTED for r in records), (
                        path,
                        value,
                    )
    assert answers[400] > 100 and answers[200] > 10  # the walk reached both readable and unreadable shapes
    assert await ledger_entries(session) == entries
    assert (await session.exec(select(PaymentMethod))).all() == []
