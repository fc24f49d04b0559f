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
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from billing import events, recharge_engine, webhooks_outgoing, webhooks_outgoing_delivery
from billing.auth import Principal
from billing.config import Environment, Settings
from billing.db import SessionFactory, session_factory, unit_of_work
from billing.events import FundingStateChanged, TransactionSettled
from billing.funding import FundingState
from billing.stripe_gateway import ChargeResult, StripeGateway
from billing.usage import record_usage
from billing.webhooks_outgoing import EndpointInput, UnsafeWebhookUrl
from models import (
    Account,
    PrincipalKind,
    TransactionKind,
    TransactionStatus,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEndpointStatus,
)
from models.types import utcnow
from schema.node import to_global_id
from server import create_app
from tests.factories import create_account, create_partner, create_payment_method, member_key, partner_key
from tests.fake_gateway import FakeGateway
from tests.graphql_client import error_messages, execute
from tests.loopback import serving
from tests.payments_helpers import ready_account
from tests.statements import recorded_statements
from tests.stripe_server import LocalStripe, stripe_settings
from tests.usage_factories import REPORTER, call, create_lead_plan, enable_auto_recharge, lead

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
    assert verified["data"] == {
        "account_id": account.id,
        "transaction_id": 7,
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
        "account_id": account.id,
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
    assert sent == [12, 12, 13]


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
    assert Webhook(rotated["secret"]).verify(sent, headers)["type"] == "webhook.test"
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
        ("auto_recharge.action_required", {"account_id": account.id, "reason": "Confirm it"})
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


async def test_the_lead_budget_reached_is_told_once_per_month_by_the_batch_that_crossed_it(
    session_factory: SessionFactory, session: AsyncSession
) -> None:
    account = await create_account(session)
    plan = await create_lead_plan(session, account, monthly_budget_minor=10_000)  # 100.00: four 25.00 leads
    await endpoint_for(session_factory, account, "http://127.0.0.1:9/hooks", "usage.budget_reached")
    march = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

    async def leads(count: int, at: datetime) -> list[str]:
        async with unit_of_work(session_factory) as batch:
            await record_usage(batch, REPORTER, [lead(account, plan, at) for _ in range(count)], now=at)
        return [d.event_type for d in await deliveries(session, account)]

    assert await leads(3, march) == []  # 75.00 of 100.00
    assert await leads(2, march) == ["usage.budget_reached"]  # 125.00: crossed by this batch
    [reached] = await deliveries(session, account)
    assert reached.payload["data"] == {
        "account_id": account.id,
        "month": "2026-03",
        "budget": {"amount_minor": 10_000, "currency": "USD"},
        "spent": {"amount_minor": 12_500, "currency": "USD"},
    }
    assert await leads(1, march) == ["usage.budget_reached"]  # already beyond it: nothing new
    # A second plan raises the budget to 200.00; crossing it again the same month is not told twice.
    await create_lead_plan(session, account, monthly_budget_minor=10_000)
    assert await leads(4, march) == ["usage.budget_reached"]
    # Next month starts afresh.
    assert await leads(8, march + timedelta(days=30)) == ["usage.budget_reached"] * 2


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
            return await webhooks_outgoing.queue_expiring_cards(check, now=at)

    assert await queued(datetime(2026, 3, 31, 0, 0, tzinfo=UTC)) == 0  # 31 days before its end
    assert await queued(datetime(2026, 4, 1, 0, 0, tzinfo=UTC)) == 1  # 30 days
    assert await queued(datetime(2026, 4, 20, 0, 0, tzinfo=UTC)) == 0  # told this month already
    assert await queued(datetime(2026, 5, 1, 0, 0, tzinfo=UTC)) == 0  # expired; May's card is 31 days away
    [told] = await deliveries(session, account)
    assert told.payload["data"] == {
        "account_id": account.id,
        "payment_method_id": soon.id,
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
    app = create_app(stripe_settings(localstripe_url), sessions=session_factory)
    app.state.stripe = stripe_gateway
    receiver = Receiver()
    async with (
        receiving(receiver) as url,
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as gateway,
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
        assert (added["__typename"], added["status"]) == ("AddFundsSuccess", "SUCCEEDED")
        assert await webhooks_outgoing_delivery.run_once(session_factory, delivery_settings(), now=now) == 1
    [(headers, body)] = receiver.received
    event = Webhook(secret).verify(body, headers)
    assert event["type"] == "topup.succeeded"
    assert event["data"]["amount"] == {"amount_minor": 5_000, "currency": "USD"}
    assert to_global_id("Transaction", event["data"]["transaction_id"]) == added["transaction"]["id"]
