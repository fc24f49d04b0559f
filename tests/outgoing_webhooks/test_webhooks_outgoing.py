"""Outgoing webhooks: the outbox written with the change, delivery to a receiver on loopback signed per Standard
Webhooks (verified with the standard's own library), retries, order, leases, and the address check."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from billing import worker as worker_loops
from billing.accounts.funding import FundingState
from billing.auto_recharge import engine as recharge_engine
from billing.auto_recharge import reconciliation
from billing.config import Environment, Settings
from billing.db import SessionFactory, create_engine, session_factory, unit_of_work
from billing.events import service as events
from billing.events.service import FundingStateChanged, TransactionSettled
from billing.keys.service import Principal
from billing.outgoing_webhooks import delivery as webhooks_outgoing_delivery
from billing.outgoing_webhooks import service as webhooks_outgoing
from billing.outgoing_webhooks.service import EndpointInput, UnsafeWebhookUrl
from billing.scope import Scope
from billing.stripe_gateway import ChargeResult, StripeGateway
from billing.usage.service import record_usage
from models import (
    Account,
    DomainEventRow,
    LeadPlanRollup,
    LeadPlanSubscription,
    PrincipalKind,
    TransactionKind,
    TransactionStatus,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEndpointStatus,
)
from models import UsageEvent as UsageEventRow
from models.types import utcnow
from schema.node import to_global_id
from tests.conftest import migrate, migrated_database
from tests.support.factories import (
    create_account,
    create_partner,
    create_payment_method,
    member_key,
    partner_key,
)
from tests.support.fake_gateway import FakeGateway
from tests.support.gateway import open_gateway
from tests.support.graphql_client import error_messages, execute
from tests.support.loopback import serving
from tests.support.payments_helpers import ready_account
from tests.support.statements import recorded_statements
from tests.support.stripe_server import LocalStripe, stripe_settings
from tests.support.usage_factories import REPORTER, call, create_lead_plan, enable_auto_recharge, lead

# Endpoints' own timestamps; a worker pass is given `now` (the fixture), after every commit of the test.
CREATED = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
ADMIN = Principal(PrincipalKind.ADMIN, api_key_id=0)


@dataclass
class Receiver:
    """A webhook receiver: answers each request with the next planned reply (200 once the plan is used up).
    A reply of None never answers (until the test ends): the sender's timeout or a killed worker."""

    plan: list[int | None] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Queue[None] = field(default_factory=asyncio.Queue)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def endpoint(self, request: Request) -> PlainTextResponse:
        self.received.append((dict(request.headers), await request.body()))
        self.arrived.put_nowait(None)
        reply = self.plan.pop(0) if self.plan else 200
        if reply is None:
            await self.released.wait()
            reply = 200
        return PlainTextResponse("ok" if reply < 400 else "receiver broke", status_code=reply)

    def bodies(self) -> list[dict[str, object]]:
        return [json.loads(body) for _, body in self.received]


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[str]:
    app = Starlette(routes=[Route("/hooks", receiver.endpoint, methods=["POST"])])
    async with serving(app) as base_url:
        try:
            yield f"{base_url}/hooks"
        finally:
            receiver.released.set()


def delivery_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": Environment.TEST,
        "stripe_secret_key": "sk_test_unused",
        "embedded_worker": False,
        "webhook_timeout_seconds": 1.0,
    }
    return Settings(**(values | overrides))  # type: ignore[arg-type]


@pytest.fixture
def now() -> datetime:
    """A worker pass's clock: later than any delivery the test writes (each is due from its commit)."""
    return utcnow() + timedelta(minutes=1)


async def endpoint_for(
    factory: SessionFactory, account: Account, url: str, *types: str, principal: Principal = ADMIN
) -> WebhookEndpoint:
    request = EndpointInput(url=url, event_types=types or webhooks_outgoing.EVENT_TYPES)
    valid = await webhooks_outgoing.vetted(request, loopback_allowed=True, creating=True)
    assert account.id is not None
    async with unit_of_work(factory) as session:
        return await webhooks_outgoing.create_endpoint(session, principal, account.id, valid, now=CREATED)


def top_up_settled(account: Account, transaction_id: int, status: TransactionStatus) -> TransactionSettled:
    assert account.id is not None
    failure = None if status is TransactionStatus.SUCCEEDED else "card_declined"
    return TransactionSettled(
        account.id, transaction_id, TransactionKind.TOP_UP, status, 2_500, "USD", failure
    )


def global_account_id(account: Account) -> str:
    assert account.id is not None
    return to_global_id("Account", account.id)


async def committed(factory: SessionFactory, *recorded: events.DomainEvent) -> None:
    async with unit_of_work(factory) as session:
        events.record(session, *recorded)


async def deliveries(session: AsyncSession, account: Account) -> list[WebhookDelivery]:
    statement = (
        select(WebhookDelivery)
        .where(WebhookDelivery.account_id == account.id)
        .order_by(col(WebhookDelivery.id))
    )
    rows = list((await session.exec(statement)).all())
    for row in rows:
        await session.refresh(row)
    return rows


async def status_of(session: AsyncSession, endpoint: WebhookEndpoint) -> str:
    statement = select(WebhookEndpoint.status).where(WebhookEndpoint.id == endpoint.id)
    return (await session.exec(statement)).one()


async def test_a_settled_top_up_reaches_the_receiver_signed_per_the_standard(
    now: datetime, session_factory: SessionFactory, session: AsyncSession
) -> None:
    account = await create_account(session)
    receiver = Receiver()
    async with receiving(receiver) as url:
        endpoint = await endpoint_for(session_factory, account, url)
        await committed(session_factory, top_up_settled(account, 7, TransactionStatus.SUCCEEDED))
        assert await webhooks_outgoing_delivery.run_once(session_factory, delivery_settings(), now=now) == 1
    [(headers, body)] = receiver.received
    verified = Webhook(endpoint.secret).verify(body, headers)
    assert verified["type"] == "topup.succeeded"
    assert account.id is not None
    assert verified["data"] == {
        "account_id": to_global_id("Account", account.id),
        "transaction_id": to_global_id("Transaction", 7),
        "status": "succeeded",
        "amount": {"amount_minor": 2_500, "currency": "USD"},
        "failure_code": None,
    }
    assert endpoint.secret.startswith("whsec_")
    with pytest.raises(Exception, match="signature"):
        Webhook(webhooks_outgoing.new_secret()).verify(body, headers)
    [delivery] = await deliveries(session, account)
    assert (delivery.status, delivery.attempts, delivery.last_response_status) == ("succeeded", 1, 200)
    assert headers["webhook-id"] == delivery.webhook_id


async def test_only_subscribed_endpoints_of_the_account_get_a_delivery_and_falling_funds_are_told(
    session_factory: SessionFactory, session: AsyncSession
) -> None:
    account, other = await create_account(session), await create_account(session)
    url = "http://127.0.0.1:9/hooks"  # never sent to: this test only reads the outbox
    await endpoint_for(session_factory, account, url, "balance.low", "balance.depleted")
    await endpoint_for(session_factory, account, url, "topup.failed")
    await endpoint_for(session_factory, other, url)
    assert account.id is not None
    await committed(
        session_factory,
        events.BalanceChanged(account.id, "USD", 5_000, 500),
        FundingStateChanged(account.id, FundingState.OK, FundingState.LOW, 500),
        top_up_settled(account, 8, TransactionStatus.SUCCEEDED),
        # Rising from depleted to low is not news for a receiver.
        FundingStateChanged(account.id, FundingState.DEPLETED, FundingState.LOW, 600),
    )
    [low] = await deliveries(session, account)
    assert low.event_type == "balance.low"
    assert low.payload["data"] == {
        "account_id": to_global_id("Account", account.id),
        "funding_state": "low",
        "balance": {"amount_minor": 500, "currency": "USD"},
    }
    assert await deliveries(session, other) == []


async def test_a_commit_without_webhook_events_writes_no_delivery_statement(
    engine: AsyncEngine, session_factory: SessionFactory, session: AsyncSession
) -> None:
    account = await create_account(session)
    assert account.id is not None
    with recorded_statements(engine) as statements:
        await committed(session_factory, events.BalanceChanged(account.id, "USD", 100, 200))
    assert not [s for s in statements if "webhook_delivery" in s]


async def test_a_500_and_a_timeout_are_retried_with_back_off_under_the_same_webhook_id(
    now: datetime, session_factory: SessionFactory, session: AsyncSession
) -> None:
    account = await create_account(session)
    receiver = Receiver(plan=[500, None, 200])
    settings = delivery_settings(webhook_timeout_seconds=0.5)
    async with receiving(receiver) as url:
        await endpoint_for(session_factory, account, url)
        await committed(session_factory, top_up_settled(account, 9, TransactionStatus.FAILED))
        assert await webhooks_outgoing_delivery.run_once(session_factory, settings, now=now) == 1
        [delivery] = await deliveries(session, account)
        assert (delivery.status, delivery.last_response_status) == ("pending", 500)
        assert delivery.last_response_body == "receiver broke"
        assert delivery.next_attempt_at == now + timedelta(seconds=5)
        # Not due before its back-off ends.
        assert await webhooks_outgoing_delivery.run_once(session_factory, settings, now=now) == 0
        second = now + timedelta(seconds=5)
        assert await webhooks_outgoing_delivery.run_once(session_factory, settings, now=second) == 1
        [delivery] = await deliveries(session, account)
        assert delivery.last_error == "no answer within 0.5 s"
        assert delivery.next_attempt_at == second + timedelta(minutes=5)
        third = second + timedelta(minutes=5)
        assert await webhooks_outgoing_delivery.run_once(session_factory, settings, now=third) == 1
    [delivery] = await deliveries(session, account)
    assert (delivery.status, delivery.attempts, delivery.delivered_at) == ("succeeded", 3, third)
    assert {headers["webhook-id"] for headers, _ in receiver.received} == {delivery.webhook_id}
    assert len(receiver.received) == 3


async def test_a_delivery_out_of_retries_fails_and_marks_its_endpoint_failing_until_one_succeeds(
    now: datetime, session_factory: SessionFactory, session: AsyncSession
) -> None:
    account = await create_account(session)
    receiver = Receiver(plan=[503 for _ in range(len(webhooks_outgoing_delivery.BACKOFF) + 1)])
    settings = delivery_settings()
    async with receiving(receiver) as url:
        endpoint = await endpoint_for(session_factory, account, url)
        await committed(session_factory, top_up_settled(account, 10, TransactionStatus.SUCCEEDED))
        at = now
        for wait in (*webhooks_outgoing_delivery.BACKOFF, None):
            assert await webhooks_outgoing_delivery.run_once(session_factory, settings, now=at) == 1
            at += wait or timedelta(0)
        [delivery] = await deliveries(session, account)
        assert (delivery.status, delivery.attempts) == ("failed", len(webhooks_outgoing_delivery.BACKOFF) + 1)
        assert sum(wait.total_seconds() for wait in webhooks_outgoing_delivery.BACKOFF) > 24 * 3600
        assert await status_of(session, endpoint) == WebhookEndpointStatus.FAILING
        # Still queued for, and healthy again once a delivery gets through.
        await committed(session_factory, top_up_settled(account, 11, TransactionStatus.SUCCEEDED))
        assert await webhooks_outgoing_delivery.run_once(session_factory, settings, now=at) == 1
    assert await status_of(session, endpoint) == WebhookEndpointStatus.ACTIVE


async def test_a_later_event_waits_while_an_earlier_one_of_its_endpoint_is_pending(
    now: datetime, session_factory: SessionFactory, session: AsyncSession
) -> None:
    account = await create_account(session)
    receiver = Receiver(plan=[500])
    settings = delivery_settings()
    async with receiving(receiver) as url:
        await endpoint_for(session_factory, account, url)
        await committed(session_factory, top_up_settled(account, 12, TransactionStatus.SUCCEEDED))
        await committed(session_factory, top_up_settled(account, 13, TransactionStatus.SUCCEEDED))
        assert await webhooks_outgoing_delivery.run_once(session_factory, settings, now=now) == 1
        # The second is due, but the first is still pending (backing off): nothing goes out.
        assert await webhooks_outgoing_delivery.run_once(session_factory, settings, now=now) == 0
        later = now + timedelta(seconds=5)
        assert await webhooks_outgoing_delivery.run_once(session_factory, settings, now=later) == 1
        assert await webhooks_outgoing_delivery.run_once(session_factory, settings, now=later) == 1
    sent = [body["data"]["transaction_id"] for body in receiver.bodies()]  # type: ignore[index]
    assert sent == [to_global_id("Transaction", pk) for pk in (12, 12, 13)]


async def test_a_worker_killed_mid_delivery_loses_it_to_the_next_after_its_lease_same_webhook_id(
    now: datetime, session_factory: SessionFactory, session: AsyncSession
) -> None:
    account = await create_account(session)
    receiver = Receiver(plan=[None])
    settings = delivery_settings(webhook_timeout_seconds=30.0)
    async with receiving(receiver) as url:
        await endpoint_for(session_factory, account, url)
        await committed(session_factory, top_up_settled(account, 14, TransactionStatus.SUCCEEDED))
        doomed = asyncio.create_task(webhooks_outgoing_delivery.run_once(session_factory, settings, now=now))
        await receiver.arrived.get()
        doomed.cancel()  # the worker dies while the receiver holds the request
        with pytest.raises(asyncio.CancelledError):
            await doomed
        # Held by the dead worker's lease until it runs out.
        assert await webhooks_outgoing_delivery.run_once(session_factory, settings, now=now) == 0
        after = now + webhooks_outgoing_delivery.lease_for(settings)
        assert await webhooks_outgoing_delivery.run_once(session_factory, settings, now=after) == 1
    [delivery] = await deliveries(session, account)
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert [headers["webhook-id"] for headers, _ in receiver.received] == [delivery.webhook_id] * 2


@pytest.mark.postgres_only
async def test_workers_sending_at_once_never_send_one_delivery_twice(
    now: datetime, committing_engine: AsyncEngine
) -> None:
    factory = session_factory(committing_engine)
    async with unit_of_work(factory) as session:
        accounts = [await create_account(session) for _ in range(6)]
    receiver = Receiver()
    async with receiving(receiver) as url:
        for account in accounts:
            await endpoint_for(factory, account, url)
            await committed(factory, top_up_settled(account, 1, TransactionStatus.SUCCEEDED))
        settings = delivery_settings()
        sent = await asyncio.gather(
            *(webhooks_outgoing_delivery.run_once(factory, settings, now=now, batch_size=2) for _ in range(6))
        )
        while sum(sent) < len(accounts):
            sent.append(await webhooks_outgoing_delivery.run_once(factory, settings, now=now))
    ids = [headers["webhook-id"] for headers, _ in receiver.received]
    assert sum(sent) == len(accounts) == len(ids) == len(set(ids))


@dataclass
class FailsEachFirstAttempt(Receiver):
    """Answers 503 to the first attempt of every event (by its webhook-id), 200 to the next."""

    seen: set[str] = field(default_factory=set)

    async def endpoint(self, request: Request) -> PlainTextResponse:
        self.received.append((dict(request.headers), await request.body()))
        webhook_id = request.headers["webhook-id"]
        first = webhook_id not in self.seen
        self.seen.add(webhook_id)
        return PlainTextResponse("try again" if first else "ok", status_code=503 if first else 200)


@pytest.mark.postgres_only
async def test_workers_sending_at_once_keep_each_accounts_order_through_failures_and_back_off(
    now: datetime, committing_engine: AsyncEngine
) -> None:
    """Four workers at once, every event failing once and backing off: per account (its endpoint), no event
    goes out before the one before it has been delivered."""
    factory = session_factory(committing_engine)
    async with unit_of_work(factory) as session:
        accounts = [await create_account(session) for _ in range(3)]
    receiver = FailsEachFirstAttempt()
    settings = delivery_settings()
    async with receiving(receiver) as url:
        for account in accounts:
            await endpoint_for(factory, account, url)
        for number in range(1, 5):
            for account in accounts:
                await committed(factory, top_up_settled(account, number, TransactionStatus.SUCCEEDED))
        at = now
        for _ in range(30):  # 8 attempts per endpoint, one at a time: far fewer rounds than this
            async with factory() as session:
                waiting = await session.exec(
                    select(func.count()).where(col(WebhookDelivery.status) != WebhookDeliveryStatus.SUCCEEDED)
                )
                if waiting.one() == 0:
                    break
            await asyncio.gather(
                *(
                    webhooks_outgoing_delivery.run_once(factory, settings, now=at, batch_size=2)
                    for _ in range(4)
                )
            )
            at += webhooks_outgoing_delivery.BACKOFF[0]
    sent: dict[str, list[str]] = {}
    for body in receiver.bodies():
        data = body["data"]
        assert isinstance(data, dict)
        sent.setdefault(data["account_id"], []).append(data["transaction_id"])
    each_twice = [to_global_id("Transaction", n) for n in range(1, 5) for _ in range(2)]
    assert sent == {global_account_id(account): each_twice for account in accounts}


@pytest.mark.postgres_only
async def test_the_worker_sends_while_a_recharge_pass_is_stuck_and_recharges_while_a_receiver_holds_on(
    committing_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """billing/worker.py runs delivery beside the auto-recharge loop, not inside its pass. The recharge pass is a
    stand-in that reports each start and hangs until released (as a charge slow at Stripe would), reconciliation
    finds nothing: the test sees which loop waits for which, without Stripe."""
    factory = session_factory(committing_engine)
    async with unit_of_work(factory) as session:
        account = await create_account(session)
    started: asyncio.Queue[None] = asyncio.Queue()
    released = asyncio.Event()

    async def hanging_pass(*args: object, **kwargs: object) -> int:
        started.put_nowait(None)
        await released.wait()
        return 0

    async def nothing_to_reconcile(*args: object, **kwargs: object) -> reconciliation.ReconcileReport:
        return reconciliation.ReconcileReport()

    monkeypatch.setattr(recharge_engine, "run_once", hanging_pass)
    monkeypatch.setattr(reconciliation, "reconcile", nothing_to_reconcile)
    settings = delivery_settings(
        worker_poll_seconds=0.01, webhook_poll_seconds=0.01, webhook_timeout_seconds=30
    )
    stop = asyncio.Event()
    receiver = Receiver(plan=[200, None])  # the second request is held until the test ends it
    async with receiving(receiver) as url:
        await endpoint_for(factory, account, url)
        gateway = StripeGateway.from_settings(settings)  # never called: the recharge pass is a stand-in
        worker = asyncio.create_task(worker_loops.run(factory, gateway, stop_event=stop, settings=settings))
        await started.get()  # a recharge pass is stuck from here on
        await committed(factory, top_up_settled(account, 1, TransactionStatus.SUCCEEDED))
        await asyncio.wait_for(receiver.arrived.get(), timeout=30)
        assert started.empty() and not released.is_set()  # still the one stuck pass

        await committed(factory, top_up_settled(account, 2, TransactionStatus.SUCCEEDED))
        await asyncio.wait_for(
            receiver.arrived.get(), timeout=30
        )  # the delivery loop now waits on the receiver
        released.set()
        await asyncio.wait_for(
            started.get(), timeout=30
        )  # and the recharge loop runs its next pass meanwhile
        assert len(receiver.received) == 2 and not receiver.released.is_set()
        stop.set()
        receiver.released.set()
        await asyncio.wait_for(worker, timeout=30)
    sent = [body["data"]["transaction_id"] for body in receiver.bodies()]  # type: ignore[index]
    assert sent == [to_global_id("Transaction", 1), to_global_id("Transaction", 2)]


# --- the address check ------------------------------------------------------------------------------------


def resolving_to(*addresses: str) -> Callable[[str, int], object]:
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.1/hooks",
        "https://127.0.0.1/hooks",
        "https://[::1]/hooks",
        "https://169.254.169.254/latest",
        "https://[::ffff:192.168.1.1]/hooks",
        "https://224.0.0.1/hooks",
        "https://0.0.0.0/hooks",
        "http://93.184.216.34/hooks",
        "https://user:pass@93.184.216.34/hooks",
        "ftp://93.184.216.34/hooks",
    ],
)
async def test_production_refuses_urls_that_point_into_our_network(url: str) -> None:
    with pytest.raises(UnsafeWebhookUrl):
        await webhooks_outgoing.resolved_addresses(url, loopback_allowed=False)


async def test_production_refuses_a_name_when_any_address_it_resolves_to_is_private(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhooks_outgoing, "resolve", resolving_to("93.184.216.34", "10.1.2.3"))
    with pytest.raises(UnsafeWebhookUrl, match="private"):
        await webhooks_outgoing.resolved_addresses("https://hooks.example.test/x", loopback_allowed=False)
    monkeypatch.setattr(webhooks_outgoing, "resolve", resolving_to("93.184.216.34"))
    assert await webhooks_outgoing.resolved_addresses(
        "https://hooks.example.test/x", loopback_allowed=False
    ) == ("hooks.example.test", ["93.184.216.34"])
    # `localhost` resolves for real (no traffic): loopback, refused in production.
    monkeypatch.undo()
    with pytest.raises(UnsafeWebhookUrl, match="loopback"):
        await webhooks_outgoing.resolved_addresses("https://localhost/x", loopback_allowed=False)


async def test_a_name_that_turned_private_after_it_was_saved_is_refused_at_delivery_without_a_request(
    now: datetime, session_factory: SessionFactory, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await create_account(session)
    monkeypatch.setattr(webhooks_outgoing, "resolve", resolving_to("93.184.216.34"))
    endpoint = await endpoint_for(session_factory, account, "https://hooks.example.test/x")
    await committed(session_factory, top_up_settled(account, 15, TransactionStatus.SUCCEEDED))
    monkeypatch.setattr(webhooks_outgoing, "resolve", resolving_to("192.168.0.7"))
    sent: list[httpx.Request] = []

    def never(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    production_like = delivery_settings(webhook_allow_loopback=False)
    assert (
        await webhooks_outgoing_delivery.run_once(
            session_factory, production_like, now=now, transport=httpx.MockTransport(never)
        )
        == 1
    )
    assert sent == []
    [delivery] = await deliveries(session, account)
    assert delivery.status == WebhookDeliveryStatus.PENDING
    assert delivery.last_error == "the host hooks.example.test resolves to a private address"
    assert endpoint.url == "https://hooks.example.test/x"


async def test_a_checked_name_is_connected_to_at_the_address_it_resolved_to(
    now: datetime, session_factory: SessionFactory, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request goes to the checked address, with the URL's name as Host and TLS name (an httpx
    MockTransport stands in for the network: nothing leaves the machine)."""
    account = await create_account(session)
    monkeypatch.setattr(webhooks_outgoing, "resolve", resolving_to("93.184.216.34"))
    await endpoint_for(session_factory, account, "https://hooks.example.test:8443/x?a=1")
    await committed(session_factory, top_up_settled(account, 16, TransactionStatus.SUCCEEDED))
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    production_like = delivery_settings(webhook_allow_loopback=False)
    await webhooks_outgoing_delivery.run_once(
        session_factory, production_like, now=now, transport=httpx.MockTransport(answer)
    )
    [request] = sent
    assert str(request.url) == "https://93.184.216.34:8443/x?a=1"
    assert request.headers["host"] == "hooks.example.test:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.test"


# --- managing endpoints through GraphQL -------------------------------------------------------------------

CREATE = """
mutation Create($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) {
    __typename
    ... on CreateWebhookEndpointSuccess { secret webhookEndpoint { id url eventTypes status } }
    ... on InvalidWebhookEndpointError { fieldErrors { field message } }
    ... on Error { message }
  }
}
"""
ROTATE = """
mutation Rotate($id: ID!) {
  rotateWebhookSecret(input: {webhookEndpointId: $id}) {
    __typename
    ... on RotateWebhookSecretSuccess { secret }
  }
}
"""
SEND_TEST = """
mutation Test($id: ID!) {
  sendTestWebhook(input: {webhookEndpointId: $id}) {
    __typename
    ... on SendTestWebhookSuccess { delivery { webhookId status } }
  }
}
"""
UPDATE = """
mutation Update($input: UpdateWebhookEndpointInput!) {
  updateWebhookEndpoint(input: $input) {
    __typename
    ... on UpdateWebhookEndpointSuccess { webhookEndpoint { eventTypes status } }
  }
}
"""
DELETE = """
mutation Delete($id: ID!) {
  deleteWebhookEndpoint(input: {webhookEndpointId: $id}) { __typename }
}
"""
LISTED = """
query Listed($id: ID) {
  account(id: $id) {
    webhookEndpoints { id url status }
    webhookDeliveries(first: 10) {
      edges { node { eventType status attempts lastResponseStatus webhookId } }
      pageInfo { hasNextPage }
    }
  }
}
"""


async def test_a_member_creates_an_endpoint_sees_its_secret_once_and_gets_a_signed_test_event(
    now: datetime, client: httpx.AsyncClient, session_factory: SessionFactory, session: AsyncSession
) -> None:
    account = await create_account(session)
    key = await member_key(session, account)
    receiver = Receiver()
    async with receiving(receiver) as url:
        body = await execute(
            client, key, CREATE, {"input": {"url": url, "eventTypes": ["topup.succeeded", "balance.low"]}}
        )
        created = body["data"]["createWebhookEndpoint"]
        assert created["__typename"] == "CreateWebhookEndpointSuccess", body
        assert created["webhookEndpoint"]["eventTypes"] == ["balance.low", "topup.succeeded"]
        endpoint_id = created["webhookEndpoint"]["id"]
        rotated = (await execute(client, key, ROTATE, {"id": endpoint_id}))["data"]["rotateWebhookSecret"]
        assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
        queued = (await execute(client, key, SEND_TEST, {"id": endpoint_id}))["data"]["sendTestWebhook"]
        assert queued["delivery"]["status"] == "PENDING"
        assert await webhooks_outgoing_delivery.run_once(session_factory, delivery_settings(), now=now) == 1
    [(headers, sent)] = receiver.received
    test_event = Webhook(rotated["secret"]).verify(sent, headers)
    assert test_event["type"] == "webhook.test"
    assert test_event["data"] == {
        "account_id": global_account_id(account),
        "webhook_endpoint_id": endpoint_id,
    }
    listed = (await execute(client, key, LISTED))["data"]["account"]
    assert listed["webhookEndpoints"] == [{"id": endpoint_id, "url": url, "status": "ACTIVE"}]
    [edge] = listed["webhookDeliveries"]["edges"]
    assert edge["node"] == {
        "eventType": "webhook.test",
        "status": "SUCCEEDED",
        "attempts": 1,
        "lastResponseStatus": 200,
        "webhookId": headers["webhook-id"],
    }
    # The secret is nowhere to read afterwards: not a field of the endpoint.
    assert "secret" not in json.dumps(listed)


async def test_endpoint_input_is_bounded_and_its_url_checked(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    account = await create_account(session)
    key = await member_key(session, account)
    cases = [
        ({"url": "https://10.0.0.1/x", "eventTypes": ["topup.succeeded"]}, "url"),
        ({"url": "http://127.0.0.1/" + "x" * 2_100, "eventTypes": ["topup.succeeded"]}, "url"),
        ({"url": "http://127.0.0.1/x", "eventTypes": ["topup.exploded"]}, "eventTypes"),
        ({"url": "http://127.0.0.1/x", "eventTypes": []}, "eventTypes"),
        (
            {"url": "http://127.0.0.1/x", "eventTypes": ["balance.low"], "description": "d" * 501},
            "description",
        ),
    ]
    for given, field_name in cases:
        answer = (await execute(client, key, CREATE, {"input": given}))["data"]["createWebhookEndpoint"]
        assert answer["__typename"] == "InvalidWebhookEndpointError", given
        assert [error["field"] for error in answer["fieldErrors"]] == [field_name]
    valid = {"url": "http://127.0.0.1:9/x", "eventTypes": ["balance.low"]}
    for _ in range(webhooks_outgoing.MAX_ENDPOINTS_PER_ACCOUNT):
        answer = (await execute(client, key, CREATE, {"input": valid}))["data"]["createWebhookEndpoint"]
        assert answer["__typename"] == "CreateWebhookEndpointSuccess"
    answer = (await execute(client, key, CREATE, {"input": valid}))["data"]["createWebhookEndpoint"]
    assert answer["__typename"] == "WebhookEndpointLimitError"


async def test_a_partner_cannot_see_or_manage_another_partners_accounts_endpoints(
    client: httpx.AsyncClient, session_factory: SessionFactory, session: AsyncSession
) -> None:
    mine, theirs = await create_account(session), await create_account(session)
    key = await partner_key(session, await create_partner(session, mine))
    await create_partner(session, theirs)
    foreign = await endpoint_for(session_factory, theirs, "http://127.0.0.1:9/hooks")
    assert foreign.id is not None and theirs.id is not None and mine.id is not None
    foreign_id = to_global_id("WebhookEndpoint", foreign.id)
    for operation, variables, field_name in (
        (ROTATE, {"id": foreign_id}, "rotateWebhookSecret"),
        (SEND_TEST, {"id": foreign_id}, "sendTestWebhook"),
        (DELETE, {"id": foreign_id}, "deleteWebhookEndpoint"),
        (UPDATE, {"input": {"webhookEndpointId": foreign_id, "enabled": False}}, "updateWebhookEndpoint"),
    ):
        answer = (await execute(client, key, operation, variables))["data"][field_name]
        assert answer["__typename"] == "WebhookEndpointNotFoundError", field_name
    create_there = {
        "accountId": to_global_id("Account", theirs.id),
        "url": foreign.url,
        "eventTypes": ["balance.low"],
    }
    # Another partner's account is no account at all, as everywhere else.
    refused = await execute(client, key, CREATE, {"input": create_there})
    assert error_messages(refused) == ["accountId: no such account"]
    assert await status_of(session, foreign) == WebhookEndpointStatus.ACTIVE
    listed = await execute(client, key, LISTED, {"id": to_global_id("Account", theirs.id)})
    assert error_messages(listed) == ["id: no such account"]
    # Its own account's endpoints it manages.
    create_mine = {**create_there, "accountId": to_global_id("Account", mine.id)}
    answer = (await execute(client, key, CREATE, {"input": create_mine}))["data"]["createWebhookEndpoint"]
    assert answer["__typename"] == "CreateWebhookEndpointSuccess"
    updated = await execute(
        client,
        key,
        UPDATE,
        {"input": {"webhookEndpointId": answer["webhookEndpoint"]["id"], "enabled": False}},
    )
    assert updated["data"]["updateWebhookEndpoint"]["webhookEndpoint"]["status"] == "DISABLED"
    deleted = await execute(client, key, DELETE, {"id": answer["webhookEndpoint"]["id"]})
    assert deleted["data"]["deleteWebhookEndpoint"]["__typename"] == "DeleteWebhookEndpointSuccess"


# --- the auto-recharge engine's halts ---------------------------------------------------------------------


async def auto_recharging_account(session: AsyncSession, factory: SessionFactory) -> Account:
    account = await create_account(session)
    account.stripe_customer_id = f"cus_fake_{account.id}"
    card = await create_payment_method(session, account)
    await enable_auto_recharge(session, account, card)
    await endpoint_for(factory, account, "http://127.0.0.1:9/hooks")
    return account


async def spend_below_threshold(session: AsyncSession, account: Account, at: datetime) -> None:
    await record_usage(session, REPORTER, [call(account, at - timedelta(minutes=1), cost="1.00")], now=at)


async def test_three_d_secure_asked_by_the_bank_is_told_as_action_required_without_its_secret(
    session_factory: SessionFactory, session: AsyncSession
) -> None:
    account = await auto_recharging_account(session, session_factory)
    await spend_below_threshold(session, account, CREATED)
    gateway = FakeGateway(ChargeResult("requires_action", None, "pi_x_secret_y", None, "Confirm it"))
    assert await recharge_engine.run_once(session_factory, gateway, now=CREATED) == 1
    told = [d for d in await deliveries(session, account) if d.event_type.startswith("auto_recharge.")]
    assert [(d.event_type, d.payload["data"]) for d in told] == [
        ("auto_recharge.action_required", {"account_id": global_account_id(account), "reason": "Confirm it"})
    ]
    assert "secret" not in json.dumps(told[0].payload)


async def test_three_declines_in_a_row_are_each_told_and_the_suspension_once(
    session_factory: SessionFactory, session: AsyncSession
) -> None:
    account = await auto_recharging_account(session, session_factory)
    await spend_below_threshold(session, account, CREATED)
    gateway = FakeGateway(ChargeResult("declined", None, None, "card_declined", "Declined"))
    for hours in (0, 1, 2):
        at = CREATED + timedelta(hours=hours)
        assert await recharge_engine.run_once(session_factory, gateway, now=at) == 1
    told = [
        d.event_type for d in await deliveries(session, account) if d.event_type.startswith("auto_recharge.")
    ]
    assert told == ["auto_recharge.failed"] * 3 + ["auto_recharge.suspended"]


# --- lead budgets -----------------------------------------------------------------------------------------


async def test_each_lead_plans_budget_reached_is_told_once_per_plan_and_month_by_the_batch_that_crossed_it(
    session_factory: SessionFactory, session: AsyncSession
) -> None:
    account = await create_account(session)
    solar = await create_lead_plan(session, account, monthly_budget_minor=10_000)  # 100.00: four 25.00 leads
    roofs = await create_lead_plan(session, account, monthly_budget_minor=5_000)  # 50.00: two
    await endpoint_for(session_factory, account, "http://127.0.0.1:9/hooks", "usage.budget_reached")
    assert solar.id is not None and roofs.id is not None
    march = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

    async def leads(at: datetime, *plans: LeadPlanSubscription) -> list[tuple[str, str]]:
        """Records one lead per plan given; returns (plan, month) of every delivery queued so far."""
        async with unit_of_work(session_factory) as batch:
            await record_usage(batch, REPORTER, [lead(account, plan, at) for plan in plans], now=at)
        told = [d.payload["data"] for d in await deliveries(session, account)]
        return [(data["lead_plan_id"], data["month"]) for data in told]

    solar_id, roofs_id = to_global_id("LeadPlan", solar.id), to_global_id("LeadPlan", roofs.id)
    assert await leads(march, solar, solar, solar, roofs) == []  # 75.00 of 100.00, 25.00 of 50.00
    # The account's plans together are 150.00 of 150.00 now; each plan is told of its own budget.
    assert await leads(march, solar, roofs) == [(solar_id, "2026-03"), (roofs_id, "2026-03")]
    first, _ = await deliveries(session, account)
    assert first.payload["data"] == {
        "account_id": global_account_id(account),
        "lead_plan_id": solar_id,
        "month": "2026-03",
        "budget": {"amount_minor": 10_000, "currency": "USD"},
        "spent": {"amount_minor": 10_000, "currency": "USD"},
    }
    # Already beyond their budgets: nothing new this month.
    assert len(await leads(march, solar, roofs, roofs)) == 2
    # Next month starts afresh, for each plan on its own.
    april = march + timedelta(days=30)
    assert (await leads(april, roofs, roofs, solar))[2:] == [(roofs_id, "2026-04")]


async def test_the_upgrade_fills_each_plans_months_from_the_usage_recorded_before_it(backend: str) -> None:
    """Migration 0007: a plan's months (in its account's time zone) from the leads already recorded, so a
    budget crossed after the upgrade is told by the batch that crosses it; per-account events of before go."""
    async with migrated_database(backend, "plan_months", revision="0006") as url:
        engine = create_engine(url)
        try:
            factory = session_factory(engine)
            async with unit_of_work(factory) as session:
                account = await create_account(session, time_zone="Europe/Berlin")
                solar, roofs = (
                    await create_lead_plan(session, account),
                    await create_lead_plan(session, account),
                )
                assert account.id is not None
                for number, (plan, category, at, cost) in enumerate(
                    [
                        (solar, "lead", datetime(2026, 3, 31, 21, 30, tzinfo=UTC), 2_500),  # 23:30 in Berlin
                        (solar, "lead", datetime(2026, 3, 31, 22, 30, tzinfo=UTC), 1_000),  # 00:30: April
                        (solar, "lead", datetime(2026, 4, 2, 8, 0, tzinfo=UTC), 500),
                        (roofs, "lead", datetime(2026, 3, 2, 8, 0, tzinfo=UTC), 700),
                        (None, "call", datetime(2026, 3, 2, 8, 0, tzinfo=UTC), 45),
                    ]
                ):
                    session.add(
                        UsageEventRow(
                            account_id=account.id,
                            external_id=f"usage-{number}",
                            category=category,
                            occurred_at=at,
                            cost_minor=cost,
                            currency=account.currency,
                            lead_plan_id=None if plan is None else plan.id,
                        )
                    )
                session.add(
                    DomainEventRow(
                        account_id=account.id,
                        type="lead_plan.budget_reached",
                        payload={"account_id": account.id, "month": "2026-03", "budget_minor": 1},
                    )
                )
            async with engine.begin() as connection:
                await connection.run_sync(migrate)
            async with factory() as session:
                months = (await session.exec(select(LeadPlanRollup))).all()
                assert {(m.lead_plan_id, m.month, m.spent_minor) for m in months} == {
                    (solar.id, "2026-03", 2_500),
                    (solar.id, "2026-04", 1_500),
                    (roofs.id, "2026-03", 700),
                }
                assert (await session.exec(select(DomainEventRow))).all() == []
        finally:
            await engine.dispose()


# --- cards about to expire --------------------------------------------------------------------------------


async def test_a_card_expiring_within_30_days_is_told_once_per_card_and_month(
    session_factory: SessionFactory, session: AsyncSession
) -> None:
    account, quiet = await create_account(session), await create_account(session)
    soon = await create_payment_method(session, account)
    later = await create_payment_method(session, account, is_default=False, last4="5555")
    theirs = await create_payment_method(session, quiet)  # its account has no endpoint subscribed
    for card, month in ((soon, 4), (later, 5), (theirs, 4)):
        card.exp_month, card.exp_year = month, 2026  # `soon` is valid through April 30
    await session.flush()
    await endpoint_for(session_factory, account, "http://127.0.0.1:9/hooks", "payment_method.expiring")
    await endpoint_for(session_factory, quiet, "http://127.0.0.1:9/hooks", "balance.low")

    async def queued(at: datetime) -> int:
        async with unit_of_work(session_factory) as check:
            return await webhooks_outgoing.queue_expiring_cards(
                check, Scope.system("the worker's check"), now=at
            )

    assert await queued(datetime(2026, 3, 31, 0, 0, tzinfo=UTC)) == 0  # 31 days before its end
    assert await queued(datetime(2026, 4, 1, 0, 0, tzinfo=UTC)) == 1  # 30 days
    assert await queued(datetime(2026, 4, 20, 0, 0, tzinfo=UTC)) == 0  # told this month already
    assert await queued(datetime(2026, 5, 1, 0, 0, tzinfo=UTC)) == 0  # expired; May's card is 31 days away
    [told] = await deliveries(session, account)
    assert soon.id is not None
    assert told.payload["data"] == {
        "account_id": global_account_id(account),
        "payment_method_id": to_global_id("PaymentMethod", soon.id),
        "brand": soon.brand,
        "last4": soon.last4,
        "exp_month": 4,
        "exp_year": 2026,
    }
    assert await deliveries(session, quiet) == []


# --- end to end: addFunds through the gateway, the worker's pass, a receiver on loopback ------------------

ADD_FUNDS = """
mutation ($input: AddFundsInput!) {
  addFunds(input: $input) { __typename ... on AddFundsSuccess { status transaction { id status } } }
}
"""


async def test_add_funds_reaches_a_local_receiver_as_topup_succeeded_signed_per_the_standard(
    now: datetime,
    session: AsyncSession,
    session_factory: SessionFactory,
    localstripe_url: str,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
) -> None:
    account, card = await ready_account(session, stripe_gateway, localstripe)
    key = await member_key(session, account)
    assert card.id is not None
    receiver = Receiver()
    async with (
        receiving(receiver) as url,
        open_gateway(stripe_settings(localstripe_url), session_factory, stripe=stripe_gateway) as gateway,
    ):
        created = await execute(
            gateway, key, CREATE, {"input": {"url": url, "eventTypes": ["topup.succeeded"]}}
        )
        secret = created["data"]["createWebhookEndpoint"]["secret"]
        funds = {
            "paymentMethodId": to_global_id("PaymentMethod", card.id),
            "amount": "50",
            "idempotencyKey": "e2e",
        }
        added = (await execute(gateway, key, ADD_FUNDS, {"input": funds}))["data"]["addFunds"]
        account_shown = (await execute(gateway, key, "{ account { id } }"))["data"]["account"]["id"]
        assert (added["__typename"], added["status"]) == ("AddFundsSuccess", "SUCCEEDED")
        assert await webhooks_outgoing_delivery.run_once(session_factory, delivery_settings(), now=now) == 1
    [(headers, body)] = receiver.received
    event = Webhook(secret).verify(body, headers)
    assert event["type"] == "topup.succeeded"
    assert event["data"]["amount"] == {"amount_minor": 5_000, "currency": "USD"}
    # The ids are the API's own: what `Account.id` and `Transaction.id` answer.
    assert event["data"]["transaction_id"] == added["transaction"]["id"]
    assert event["data"]["account_id"] == account_shown
