"""Stripe webhooks: signature and age checks, duplicates, out-of-order delivery, refunds, the card mirror.

localstripe signs and delivers real events for PaymentIntents (used in the 3-D Secure test) but never sends
`charge.refunded` or `payment_method.*` events, and cannot send an old or forged one: those tests build the
event themselves from objects localstripe returned, signed (or mis-signed) like Stripe does.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from itertools import count
from typing import Any

import httpx
import pytest
import stripe
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from billing import payments
from billing.db import SessionFactory
from billing.stripe_gateway import StripeGateway
from models import PaymentMethod, StripeEvent, Transaction, TransactionKind, TransactionStatus
from resolvers.webhooks import stripe_webhook_endpoint
from tests.ledger_checks import checked_balance
from tests.loopback import serving
from tests.payments_helpers import THREE_D_SECURE_CARD, ready_account
from tests.stripe_server import WEBHOOK_SECRET, LocalStripe
from tests.test_payments_add_funds import SETTINGS, request

_ids = count(1)


def webhook_app(session_factory: SessionFactory, gateway: StripeGateway) -> Starlette:
    app = Starlette(routes=[Route("/webhooks/stripe", stripe_webhook_endpoint, methods=["POST"])])
    app.state.session_factory = session_factory
    app.state.stripe = gateway
    return app


@pytest.fixture
async def webhook_client(
    session_factory: SessionFactory, stripe_gateway: StripeGateway
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=webhook_app(session_factory, stripe_gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield client


def event(type_: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_test_{next(_ids)}_{time.time_ns()}",
        "object": "event",
        "type": type_,
        "data": {"object": obj},
    }


async def deliver(
    client: httpx.AsyncClient, body: dict[str, Any], *, secret: str = WEBHOOK_SECRET, age: int = 0
) -> httpx.Response:
    payload = json.dumps(body)
    signature = stripe.WebhookSignature.generate_signature_header(payload, secret, int(time.time()) - age)
    return await client.post(
        "/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )


async def stored_events(session: AsyncSession) -> int:
    return len((await session.exec(select(StripeEvent))).all())


async def test_forged_and_stale_webhooks_are_refused_and_write_nothing(
    session: AsyncSession, webhook_client: httpx.AsyncClient
) -> None:
    body = event("payment_intent.succeeded", {"id": "pi_x", "status": "succeeded", "metadata": {}})
    before = await stored_events(session)
    assert (await deliver(webhook_client, body, secret="whsec_wrong")).status_code == 400
    assert (await deliver(webhook_client, body, age=301)).status_code == 400
    unsigned = await webhook_client.post("/webhooks/stripe", content=json.dumps(body))
    assert unsigned.status_code == 400
    assert await stored_events(session) == before
    assert (await deliver(webhook_client, body, age=60)).status_code == 200  # within the tolerance
    assert await stored_events(session) == before + 1


async def top_up(
    session: AsyncSession,
    session_factory: SessionFactory,
    gateway: StripeGateway,
    localstripe: LocalStripe,
    amount: str = "40",
) -> Transaction:
    account, method = await ready_account(session, gateway, localstripe)
    result = await payments.add_funds(
        session_factory, gateway, SETTINGS, request(account.id, method.id, amount, f"t{next(_ids)}")
    )
    assert result.status == "succeeded"
    return result.transaction


async def test_refunds_take_only_the_newly_refunded_part_once(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    webhook_client: httpx.AsyncClient,
) -> None:
    entry = await top_up(session, session_factory, stripe_gateway, localstripe)
    assert entry.stripe_payment_intent_id is not None
    intent = await localstripe.retrieve(f"/v1/payment_intents/{entry.stripe_payment_intent_id}")
    charge_id = intent["latest_charge"]["id"]
    await localstripe.refund(entry.stripe_payment_intent_id, 1_000)

    def refunded(total: int) -> dict[str, Any]:
        return {
            "id": charge_id,
            "object": "charge",
            "payment_intent": entry.stripe_payment_intent_id,
            "amount": 4_000,
            "amount_refunded": total,
            "metadata": {},
        }

    first = event("charge.refunded", refunded(1_000))
    assert (await deliver(webhook_client, first)).json() == {"received": True, "duplicate": False}
    assert (await deliver(webhook_client, first)).json() == {"received": True, "duplicate": True}
    await deliver(webhook_client, event("charge.refunded", refunded(1_000)))  # another event, same state
    assert await checked_balance(session, entry.account_id) == 3_000
    await deliver(webhook_client, event("charge.refunded", refunded(2_500)))
    await deliver(webhook_client, event("charge.refunded", refunded(1_000)))  # late, older state
    assert await checked_balance(session, entry.account_id) == 1_500
    refunds = (await session.exec(select(Transaction).where(Transaction.reverses_id == entry.id))).all()
    assert sorted(r.amount_minor for r in refunds) == [-1_500, -1_000]
    assert all(r.kind == TransactionKind.REFUND and r.status == TransactionStatus.SUCCEEDED for r in refunds)


async def test_out_of_order_events_only_move_forward(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    webhook_client: httpx.AsyncClient,
) -> None:
    account, method = await ready_account(session, stripe_gateway, localstripe, number=THREE_D_SECURE_CARD)
    pending = await payments.add_funds(
        session_factory, stripe_gateway, SETTINGS, request(account.id, method.id, "30", "ooo")
    )
    assert pending.status == "requires_action" and pending.client_secret is not None
    intent_id = pending.transaction.stripe_payment_intent_id
    assert intent_id is not None and account.id is not None
    await localstripe.complete_3ds(intent_id, pending.client_secret)
    succeeded = await localstripe.retrieve(f"/v1/payment_intents/{intent_id}")
    failed_earlier = {
        **succeeded,
        "status": "requires_payment_method",
        "last_payment_error": {"code": "card_declined", "message": "declined"},
    }
    await deliver(webhook_client, event("payment_intent.succeeded", succeeded))
    await deliver(webhook_client, event("payment_intent.payment_failed", failed_earlier))
    await deliver(webhook_client, event("payment_intent.canceled", {**succeeded, "status": "canceled"}))
    entry = await session.get(Transaction, pending.transaction.id)
    assert entry is not None
    await session.refresh(entry)
    assert entry.status == TransactionStatus.SUCCEEDED
    assert await checked_balance(session, account.id) == 3_000


async def test_payment_method_events_keep_the_mirror(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    webhook_client: httpx.AsyncClient,
) -> None:
    account, method = await ready_account(session, stripe_gateway, localstripe)
    assert account.stripe_customer_id is not None
    # A card added in the Stripe portal.
    portal_card = await localstripe.card()
    await stripe_gateway.attach_card(portal_card, account.stripe_customer_id)
    attached = await localstripe.retrieve(f"/v1/payment_methods/{portal_card}")
    await deliver(webhook_client, event("payment_method.attached", attached))
    await deliver(
        webhook_client,
        event("payment_method.updated", {**attached, "card": {**attached["card"], "exp_year": 2040}}),
    )
    mirrored = (
        await session.exec(select(PaymentMethod).where(PaymentMethod.stripe_payment_method_id == portal_card))
    ).one()
    await session.refresh(mirrored)
    assert mirrored.account_id == account.id and mirrored.exp_year == 2040 and not mirrored.is_default
    # The default card removed in the portal: the other card takes over as default.
    removed = await localstripe.retrieve(f"/v1/payment_methods/{method.stripe_payment_method_id}")
    await deliver(webhook_client, event("payment_method.detached", {**removed, "customer": None}))
    remaining = (
        await session.exec(select(PaymentMethod).where(PaymentMethod.account_id == account.id))
    ).all()
    assert [m.stripe_payment_method_id for m in remaining] == [portal_card]
    await session.refresh(remaining[0])
    assert remaining[0].is_default


async def test_three_d_secure_is_settled_by_localstripe_s_own_signed_webhook(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
) -> None:
    """Real delivery: localstripe signs and POSTs `payment_intent.succeeded` to the endpoint on a loopback port."""
    account, method = await ready_account(session, stripe_gateway, localstripe, number=THREE_D_SECURE_CARD)
    pending = await payments.add_funds(
        session_factory, stripe_gateway, SETTINGS, request(account.id, method.id, "30", "3ds-hook")
    )
    intent_id = pending.transaction.stripe_payment_intent_id
    assert intent_id is not None and pending.client_secret is not None and account.id is not None
    handled: asyncio.Queue[str] = asyncio.Queue()
    endpoint = webhook_app(session_factory, stripe_gateway)

    async def only_this_test(request: Request) -> Response:
        # Events left over from earlier tests are acknowledged unread: the test's connection is not shared.
        body = await request.body()
        if intent_id.encode() not in body:
            return Response(status_code=200)
        response = await stripe_webhook_endpoint(request)
        await handled.put(json.loads(body)["type"])
        return response

    endpoint.router.routes[0] = Route("/webhooks/stripe", only_this_test, methods=["POST"])
    async with serving(endpoint) as url:
        await localstripe.deliver_webhooks_to(f"{url}/webhooks/stripe")
        await localstripe.complete_3ds(intent_id, pending.client_secret)
        kind = await asyncio.wait_for(handled.get(), timeout=15)
        assert kind == "payment_intent.succeeded"
    entry = await session.get(Transaction, pending.transaction.id)
    assert entry is not None
    await session.refresh(entry)
    assert entry.status == TransactionStatus.SUCCEEDED
    assert await checked_balance(session, account.id) == 3_000
