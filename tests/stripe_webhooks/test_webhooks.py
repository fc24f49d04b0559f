"""Stripe webhooks over HTTP: signatures and their time, duplicates, out-of-order delivery, refunds, the card
mirror, and the legitimate flows that settle money by webhook (3-D Secure top-ups, confirmed auto-recharges).

localstripe signs and delivers real events for PaymentIntents (used in the 3-D Secure test) but never sends
`charge.refunded` or `payment_method.*` events, and cannot send an old or forged one: those tests build the
event themselves from objects localstripe returned, signed (or mis-signed) like Stripe does.
"""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import httpx
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from billing.auto_recharge import engine as recharge_engine
from billing.config import Environment
from billing.db import SessionFactory
from billing.stripe_gateway import StripeGateway
from billing.usage.service import record_usage
from models import (
    AutoRechargeSettings,
    PaymentMethod,
    Recharge,
    RechargeStatus,
    Transaction,
    TransactionKind,
    TransactionStatus,
)
from tests.support.gateway import running_app
from tests.support.ledger_checks import checked_balance
from tests.support.loopback import serving
from tests.support.payments_helpers import THREE_D_SECURE_CARD, completed_3ds, ready_account, top_up
from tests.support.stripe_server import LocalStripe, stripe_settings
from tests.support.usage_factories import REPORTER, call, enable_auto_recharge
from tests.support.webhook_helpers import deliver, event, signature, stored_events

_ids = count(1)
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def unknown_intent() -> dict[str, Any]:
    """A well-formed PaymentIntent that is nobody's: readable, so only the signature decides."""
    return {
        "id": f"pi_nobody_{next(_ids)}",
        "object": "payment_intent",
        "status": "succeeded",
        "amount": 1_000,
        "currency": "usd",
        "metadata": {},
    }


async def test_forged_stale_and_future_webhooks_are_refused_and_write_nothing(
    session: AsyncSession, webhook_client: httpx.AsyncClient
) -> None:
    body = event("payment_intent.succeeded", unknown_intent())
    before = await stored_events(session)
    assert (await deliver(webhook_client, body, secret="whsec_wrong")).status_code == 400
    assert (await deliver(webhook_client, body, age=301)).status_code == 400
    # The SDK's check only looks back: a timestamp ahead of our clock beyond 60 s is refused here.
    assert (await deliver(webhook_client, body, age=-120)).status_code == 400
    unsigned = await webhook_client.post("/webhooks/stripe", content=json.dumps(body))
    assert unsigned.status_code == 400
    garbled = await webhook_client.post(
        "/webhooks/stripe",
        content=json.dumps(body),
        headers={b"Stripe-Signature": ("t=١٢٣,v1=" + "0" * 64).encode()},
    )
    assert garbled.status_code == 400
    assert await stored_events(session) == before
    assert (await deliver(webhook_client, body, age=60)).status_code == 200  # within the tolerance
    assert (await deliver(webhook_client, {**body, "id": "evt_ahead"}, age=-30)).status_code == 200
    assert await stored_events(session) == before + 2


async def test_the_signature_covers_the_exact_bytes(
    session: AsyncSession, webhook_client: httpx.AsyncClient
) -> None:
    payload = json.dumps(event("payment_intent.succeeded", unknown_intent())).encode()
    header = signature(payload)
    before = await stored_events(session)
    for tampered in (payload + b" ", payload.replace(b"1000", b"9000")):
        response = await webhook_client.post(
            "/webhooks/stripe", content=tampered, headers={"Stripe-Signature": header}
        )
        assert response.status_code == 400
    assert await stored_events(session) == before


async def test_refunds_take_only_the_newly_refunded_part_once(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    webhook_client: httpx.AsyncClient,
) -> None:
    account, method = await ready_account(session, stripe_gateway, localstripe)
    paid = await top_up(session_factory, stripe_gateway, account, method, "40")
    assert paid.status == "succeeded"
    entry = paid.transaction
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
            "currency": "usd",
            "metadata": {},
        }

    first = event("charge.refunded", refunded(1_000))
    assert (await deliver(webhook_client, first)).json() == {
        "received": True,
        "duplicate": False,
        "rejected": False,
    }
    assert (await deliver(webhook_client, first)).json()["duplicate"] is True
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
    pending = await top_up(session_factory, stripe_gateway, account, method, "30")
    assert pending.status == "requires_action" and pending.client_secret is not None
    intent_id = pending.transaction.stripe_payment_intent_id
    assert intent_id is not None and account.id is not None
    succeeded = await completed_3ds(localstripe, pending)
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
    localstripe_url: str,
) -> None:
    """Real delivery: localstripe signs and POSTs `payment_intent.succeeded` to the app on a loopback port."""
    account, method = await ready_account(session, stripe_gateway, localstripe, number=THREE_D_SECURE_CARD)
    pending = await top_up(session_factory, stripe_gateway, account, method, "30")
    intent_id = pending.transaction.stripe_payment_intent_id
    assert intent_id is not None and pending.client_secret is not None and account.id is not None
    answered: asyncio.Queue[int] = asyncio.Queue()

    async def only_this_test(scope: Scope, receive: Receive, send: Send) -> None:
        # Other events (earlier tests' leftovers) are acknowledged unread: the test's connection is not shared.
        body = await Request(scope, receive).body()
        if intent_id.encode() not in body or b'"payment_intent.succeeded"' not in body:
            await Response(status_code=200)(scope, receive, send)
            return

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def noting_the_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                await answered.put(message["status"])
            await send(message)

        await app(scope, replay, noting_the_status)

    # localstripe posts over real HTTP, so the app itself (behind the filter above) is served on loopback.
    async with (
        running_app(stripe_settings(localstripe_url, environment=Environment.TEST), session_factory) as app,
        serving(only_this_test) as url,
    ):
        await localstripe.deliver_webhooks_to(f"{url}/webhooks/stripe")
        await localstripe.complete_3ds(intent_id, pending.client_secret)
        assert await asyncio.wait_for(answered.get(), timeout=15) == 200
    entry = await session.get(Transaction, pending.transaction.id)
    assert entry is not None
    await session.refresh(entry)
    assert entry.status == TransactionStatus.SUCCEEDED
    assert await checked_balance(session, account.id) == 3_000


async def test_an_auto_recharge_confirmed_by_the_customer_is_settled_by_its_webhook(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    webhook_client: httpx.AsyncClient,
) -> None:
    """The bank asked for 3-D Secure off-session; once the customer confirms, the webhook credits it once."""
    account, card = await ready_account(session, stripe_gateway, localstripe, number=THREE_D_SECURE_CARD)
    await enable_auto_recharge(session, account, card)
    await record_usage(session, REPORTER, [call(account, NOW - timedelta(minutes=1), cost="1.00")], now=NOW)
    assert await recharge_engine.run_once(session_factory, stripe_gateway, now=NOW) == 1
    [entry] = (
        await session.exec(
            select(Transaction).where(
                Transaction.kind == TransactionKind.AUTO_RECHARGE, Transaction.account_id == account.id
            )
        )
    ).all()
    assert entry.status == TransactionStatus.PENDING
    settings = await session.get(AutoRechargeSettings, account.id, populate_existing=True)
    assert settings is not None and settings.action_required_client_secret is not None
    client_secret = settings.action_required_client_secret
    intent_id = client_secret.split("_secret_")[0]
    await localstripe.complete_3ds(intent_id, client_secret)
    succeeded = event(
        "payment_intent.succeeded", await localstripe.retrieve(f"/v1/payment_intents/{intent_id}")
    )

    assert (await deliver(webhook_client, succeeded)).json() == {
        "received": True,
        "duplicate": False,
        "rejected": False,
    }
    assert (await deliver(webhook_client, succeeded)).json()["duplicate"] is True
    await session.refresh(entry)
    assert entry.status == TransactionStatus.SUCCEEDED and entry.stripe_payment_intent_id == intent_id
    recharge = (await session.exec(select(Recharge).where(Recharge.transaction_id == entry.id))).one()
    await session.refresh(recharge)
    assert recharge.status == RechargeStatus.SUCCEEDED
    assert await checked_balance(session, account) == -100 + entry.amount_minor
