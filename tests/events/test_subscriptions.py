"""GraphQL subscriptions over WebSocket (graphql-transport-ws): the protocol and its close codes, what a
subscriber sees after a change, its scope, revocation, replay by cursor, pings, and (PostgreSQL) delivery across
gateway processes through LISTEN/NOTIFY or through Redis, and the connections-per-key limit across them.

The gateway runs under uvicorn on a loopback port with its own engine on a database of this module (events
must really commit to be delivered: the rolled-back test transaction never commits). Clients use the
`websockets` package, as a browser's graphql-ws client would speak to it.
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import column, func, table
from sqlmodel import col, select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

import resolvers.events
from billing.accounts.repository import AccountRepository
from billing.config import Environment, Settings
from billing.db import DatabaseBusy, SessionFactory, create_engine, session_factory
from billing.events import live as live_events
from billing.keys import service as auth
from billing.payment_methods import service as payment_methods
from billing.stripe_gateway import StripeGateway
from billing.usage.service import record_usage
from devtools.stripe_standin import STRIPE_KEY, WEBHOOK_SECRET
from models import Account, DomainEventRow, PartnerAccount, PaymentMethod
from schema.node import from_global_id, to_global_id
from tests.conftest import migrated_database
from tests.support.factories import (
    SYSTEM,
    create_account,
    create_company,
    create_partner,
    member_key,
    partner_key,
)
from tests.support.gateway import running_app
from tests.support.gateway_processes import Processes
from tests.support.graphql_client import post_graphql
from tests.support.loopback import serving
from tests.support.payments_helpers import THREE_D_SECURE_CARD
from tests.support.redis_server import REDIS_URL, redis_reachable
from tests.support.stripe_server import LocalStripe, stripe_settings
from tests.support.usage_factories import REPORTER, call, create_lead_plan, enable_auto_recharge
from tests.support.webhook_helpers import deliver, event

PROTOCOL = "graphql-transport-ws"
# A bound on waits for what must happen (a message, a close); never reached when the code works.
WAIT_SECONDS = 15.0
# The promise: a change reaches a subscriber on another process within a second of its commit.
DELIVERY_SECONDS = 1.0

ACCOUNT_UPDATED = """
subscription ($id: ID, $after: String) {
  accountUpdated(id: $id, after: $after) { id company { legalName } balance { available { minorUnits } } }
}
"""
TRANSACTION_UPDATED = "subscription { transactionUpdated { id kind status amount { minorUnits } } }"
TRANSACTION_UPDATED_AFTER = """
subscription ($after: String) { transactionUpdated(after: $after) { id kind status amount { minorUnits } } }
"""
ADD_FUNDS = """
mutation ($input: AddFundsInput!) {
  addFunds(input: $input) {
    __typename ... on AddFundsSuccess { status balance { minorUnits } clientSecret }
  }
}
"""
UPDATE_COMPANY = """
mutation ($input: UpdateCompanyInput!) { updateCompany(input: $input) { __typename } }
"""


def company_input(legal_name: str) -> dict[str, Any]:
    address = {"line1": "Unter den Linden 1", "city": "Berlin", "postalCode": "10117", "country": "DE"}
    return {
        "legalName": legal_name,
        "registrationNumber": "HRB 1",
        "phone": "030 1234567",
        "address": address,
    }


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A migrated database for this module only."""
    async with migrated_database(request.param, "subscriptions") as url:
        yield url


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[SessionFactory]:
    """Sessions that really commit, for the test's own set-up and changes."""
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def gateway_settings(database_url: str, localstripe_url: str, **overrides: Any) -> Settings:
    fast = {
        "subscription_init_timeout_seconds": 0.5,
        "subscription_key_check_seconds": 0.2,
        "subscription_connections_per_key": 3,
        "subscription_max_per_connection": 2,
    }
    return stripe_settings(
        localstripe_url, environment=Environment.TEST, database_url=database_url, **(fast | overrides)
    )


@dataclass
class Gateway:
    http: httpx.AsyncClient
    ws_url: str


@asynccontextmanager
async def serve_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    # Served on loopback, not over ASGI: subscriptions need a real WebSocket.
    async with (
        running_app(settings) as app,
        serving(app) as url,
        httpx.AsyncClient(base_url=url, timeout=WAIT_SECONDS) as http,
    ):
        yield Gateway(http, socket_url(url))


def socket_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/graphql"


@pytest.fixture
async def gateway(database_url: str, localstripe_url: str) -> AsyncIterator[Gateway]:
    async with serve_gateway(gateway_settings(database_url, localstripe_url)) as served:
        yield served


async def ready_account(
    sessions: SessionFactory, gateway: StripeGateway, localstripe: LocalStripe
) -> tuple[Account, str, str]:
    """A committed account with a complete company and a localstripe card: (account, member key, card id)."""
    async with sessions() as session:
        account = await create_account(session, currency="EUR", country="DE")
        await create_company(session, account)
        key = await member_key(session, account)
        await session.commit()
    assert account.id is not None
    card = await payment_methods.attach(sessions, SYSTEM, gateway, account.id, await localstripe.card())
    assert card.id is not None
    return account, key, to_global_id("PaymentMethod", card.id)


class Client:
    """A graphql-transport-ws client over one socket."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket

    async def send(self, message: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.socket.recv(), WAIT_SECONDS))
        return message

    async def receive_skipping_pings(self) -> dict[str, Any]:
        while (message := await self.receive())["type"] == "ping":
            await self.send({"type": "pong"})
        return message

    async def init(self, key: str) -> None:
        await self.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}})
        assert await self.receive() == {"type": "connection_ack"}

    async def subscribe(self, operation_id: str, query: str, **variables: Any) -> None:
        payload = {"query": query, "variables": variables}
        await self.send({"id": operation_id, "type": "subscribe", "payload": payload})

    async def next(self, operation_id: str) -> dict[str, Any]:
        message = await self.receive_skipping_pings()
        assert message["type"] == "next" and message["id"] == operation_id, message
        payload: dict[str, Any] = message["payload"]
        assert "errors" not in payload, payload
        return payload

    async def closed_with(self) -> tuple[int, str]:
        """The close code and reason, once the server has closed the socket (anything sent before is
        skipped), within WAIT_SECONDS however much it sends."""
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                while True:
                    await self.socket.recv()
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "the server closed without a close frame"
            return closed.rcvd.code, closed.rcvd.reason


@asynccontextmanager
async def client(url: str, key: str | None = None, *, subprotocol: bool = True) -> AsyncIterator[Client]:
    async with connect(url, subprotocols=[Subprotocol(PROTOCOL)] if subprotocol else None) as socket:
        opened = Client(socket)
        if key is not None:
            await opened.init(key)
        yield opened


async def add_funds(
    http: httpx.AsyncClient, key: str, card: str, amount: str, idempotency: str
) -> dict[str, Any]:
    """A top-up over HTTP; returns its AddFundsSuccess."""
    variables = {"input": {"paymentMethodId": card, "amount": amount, "idempotencyKey": idempotency}}
    response = await post_graphql(http, key, ADD_FUNDS, variables)
    payload: dict[str, Any] = response.json()["data"]["addFunds"]
    assert payload["__typename"] == "AddFundsSuccess", payload
    return payload


async def update_company(http: httpx.AsyncClient, key: str, legal_name: str) -> None:
    response = await post_graphql(http, key, UPDATE_COMPANY, {"input": company_input(legal_name)})
    assert response.json()["data"]["updateCompany"]["__typename"] == "UpdateCompanySuccess", response.text


async def cursor_now(sessions: SessionFactory) -> str:
    """The cursor of the latest event: a subscription started `after` it sees every later change, however soon
    after the `subscribe` message it commits (without one, the feed starts when the server gets to it)."""
    async with sessions() as session:
        latest = (await session.exec(select(func.max(col(DomainEventRow.id))))).one()
    assert latest is not None, "the test must change something before it subscribes"
    return live_events.event_cursor(latest)


# ------------------------------------------------------------------------------------------------ protocol


async def test_a_subscriber_sees_add_funds_new_balance_and_its_history_row(
    gateway: Gateway, sessions: SessionFactory, stripe_gateway: StripeGateway, localstripe: LocalStripe
) -> None:
    account, key, card = await ready_account(sessions, stripe_gateway, localstripe)
    async with client(gateway.ws_url, key) as subscriber:
        await subscriber.send({"type": "ping"})
        assert await subscriber.receive() == {"type": "pong"}
        after = await cursor_now(sessions)  # the card's attachment is the latest
        await subscriber.subscribe("balance", ACCOUNT_UPDATED, after=after)
        await subscriber.subscribe("history", TRANSACTION_UPDATED_AFTER, after=after)
        added = await add_funds(gateway.http, key, card, "25.00", "sub-1")
        assert added["status"] == "SUCCEEDED"
        new_balance = int(added["balance"]["minorUnits"])
        statuses: list[str] = []
        balances: list[dict[str, Any]] = []
        while len(statuses) < 2 or not balances:  # the two subscriptions' messages may interleave
            message = await subscriber.receive_skipping_pings()
            assert message["type"] == "next", message
            if message["id"] == "history":
                statuses.append(message["payload"]["data"]["transactionUpdated"]["status"])
            else:
                balances.append(message["payload"]["data"]["accountUpdated"])
        # One answer for the top-up: created pending (no balance change), then settled with the balance.
        assert [b["balance"]["available"]["minorUnits"] for b in balances] == [str(new_balance)]
        assert balances[0]["id"] == to_global_id("Account", account.id or 0)
        assert statuses == ["PENDING", "SUCCEEDED"]
        # The client completes one subscription; the other still delivers, and the id may be used again.
        await subscriber.send({"id": "history", "type": "complete"})
        await subscriber.subscribe("history", TRANSACTION_UPDATED)
        await subscriber.send({"id": "history", "type": "complete"})
        await update_company(gateway.http, key, "Renamed GmbH")
        renamed = (await subscriber.next("balance"))["data"]["accountUpdated"]
        assert renamed["company"]["legalName"] == "Renamed GmbH"


async def test_close_codes_of_the_protocol(gateway: Gateway, sessions: SessionFactory) -> None:
    async with sessions() as session:
        account = await create_account(session)
        key = await member_key(session, account)
        await session.commit()
    async with client(gateway.ws_url, subprotocol=False) as c:
        assert (await c.closed_with())[0] == 4406
    async with client(gateway.ws_url) as c:  # no connection_init within the (shortened) timeout
        assert await c.closed_with() == (4408, "Connection initialisation timeout")
    async with client(gateway.ws_url, key) as c:
        await c.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}})
        assert await c.closed_with() == (4429, "Too many initialisation requests")
    async with client(gateway.ws_url) as c:
        await c.subscribe("1", ACCOUNT_UPDATED)
        assert await c.closed_with() == (4401, "Unauthorized")
    async with client(gateway.ws_url, key) as c:
        await c.subscribe("1", ACCOUNT_UPDATED)
        await c.subscribe("1", ACCOUNT_UPDATED)
        assert await c.closed_with() == (4409, "Subscriber for 1 already exists")
    async with client(gateway.ws_url, key) as c:  # a long non-ASCII id: the reason is cut to 123 bytes
        await c.subscribe("ü" * 100, ACCOUNT_UPDATED)
        await c.subscribe("ü" * 100, ACCOUNT_UPDATED)
        code, reason = await c.closed_with()
        assert code == 4409 and reason.startswith("Subscriber for üü") and len(reason.encode()) <= 123
    for bad in ["not json", json.dumps({"type": "next", "id": "1"}), json.dumps({"id": "1"})]:
        async with client(gateway.ws_url, key) as c:
            await c.socket.send(bad)
            assert (await c.closed_with())[0] == 4400
    async with client(gateway.ws_url, key) as c:
        await c.send({"id": "1", "type": "subscribe", "payload": {"query": 1}})
        assert (await c.closed_with())[0] == 4400
    for payload in [{}, {"Authorization": "Bearer bk_000000000000_wrong"}, {"Authorization": key}]:
        async with client(gateway.ws_url) as c:
            await c.send({"type": "connection_init", "payload": payload})
            assert (await c.closed_with())[0] == 4403


async def test_errors_and_limits_answer_the_operation(gateway: Gateway, sessions: SessionFactory) -> None:
    async with sessions() as session:
        account = await create_account(session)
        key = await member_key(session, account)
        await session.commit()
    async with client(gateway.ws_url, key) as c:
        # Only subscriptions are served here; a request error is an `error` message and the socket stays.
        await c.subscribe("query", "{ account { id } }")
        message = await c.receive()
        assert message["type"] == "error" and message["id"] == "query", message
        await c.subscribe("invalid", "subscription { accountUpdated { nope } }")
        assert (await c.receive())["type"] == "error"
        # A foreign account is an argument error, as for queries: the stream ends with it.
        await c.subscribe("foreign", ACCOUNT_UPDATED, id=to_global_id("Account", 999_999))
        errored = await c.receive()
        assert (
            errored["type"] == "next" and errored["payload"]["errors"][0]["message"] == "id: no such account"
        )
        assert await c.receive() == {"id": "foreign", "type": "complete"}
        # At most two subscriptions per connection (as configured): a third is refused, the two stay.
        await c.subscribe("a", ACCOUNT_UPDATED)
        await c.subscribe("b", ACCOUNT_UPDATED)
        await c.subscribe("c", ACCOUNT_UPDATED)
        refused = await c.receive()
        assert refused["id"] == "c" and refused["type"] == "error"
        assert refused["payload"][0]["extensions"]["code"] == "SUBSCRIPTION_LIMIT"
    # Three connections per key (as configured): the fourth is told to come back later. (Another key: the
    # server may not have counted the connection above as closed yet.)
    async with sessions() as session:
        other_key = await member_key(session, account)
        await session.commit()
    async with (
        client(gateway.ws_url, other_key),
        client(gateway.ws_url, other_key),
        client(gateway.ws_url, other_key),
        client(gateway.ws_url) as fourth,
    ):
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {other_key}"}}
        await fourth.send(init)
        assert (await fourth.closed_with())[0] == 1013


async def test_errors_of_a_subscription_are_shaped_as_over_http(
    gateway: Gateway, sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same error policy as HTTP: a located error with its code, argument and request id (one per
    subscription); a busy database is SERVICE_UNAVAILABLE, not a masked crash; a wrongly typed variable is
    BAD_USER_INPUT; an unknown operation name a request error."""
    async with sessions() as session:
        key = await member_key(session, await create_account(session))
        await session.commit()
    async with client(gateway.ws_url, key) as c:
        await c.subscribe("bad id", ACCOUNT_UPDATED, id="garbage")
        errored = await c.receive()
        assert errored["type"] == "next" and errored["payload"]["data"] is None, errored
        [error] = errored["payload"]["errors"]
        assert error == {
            "message": "id: not a valid ID",
            "locations": [{"line": 3, "column": 3}],
            "path": ["accountUpdated"],
            "extensions": {"code": "BAD_USER_INPUT", "argument": "id", "requestId": ANY},
        }
        assert await c.receive() == {"id": "bad id", "type": "complete"}
        await c.subscribe("again", ACCOUNT_UPDATED, id="garbage")
        again = (await c.receive())["payload"]["errors"][0]["extensions"]["requestId"]
        assert again != error["extensions"]["requestId"]
        assert await c.receive() == {"id": "again", "type": "complete"}

        await c.subscribe("variable", ACCOUNT_UPDATED, id=["not", "an", "id"])
        refused = await c.receive()
        assert refused["type"] == "error", refused
        assert [e["extensions"]["code"] for e in refused["payload"]] == ["BAD_USER_INPUT"]

        unknown = {"query": ACCOUNT_UPDATED, "operationName": "Nope"}
        await c.send({"id": "unknown", "type": "subscribe", "payload": unknown})
        refused = await c.receive()
        assert refused["type"] == "error", refused
        assert [e["extensions"]["code"] for e in refused["payload"]] == ["GRAPHQL_VALIDATION_FAILED"]

        async def busy(*args: object, **kwargs: object) -> None:
            raise DatabaseBusy("pool exhausted")

        monkeypatch.setattr(resolvers.events, "visible_account", busy)
        await c.subscribe("busy", ACCOUNT_UPDATED, id=to_global_id("Account", 1))
        shed = (await c.receive())["payload"]["errors"]
        assert [(e["message"], e["extensions"]["code"]) for e in shed] == [
            ("The service is busy; retry shortly.", "SERVICE_UNAVAILABLE")
        ]
        assert await c.receive() == {"id": "busy", "type": "complete"}


async def test_a_subscription_over_http_is_refused(gateway: Gateway, sessions: SessionFactory) -> None:
    async with sessions() as session:
        key = await member_key(session, await create_account(session))
        await session.commit()
    response = await post_graphql(
        gateway.http, key, ACCOUNT_UPDATED, headers={"Accept": "application/graphql-response+json"}
    )
    assert response.status_code == 400
    assert "WebSocket" in response.json()["errors"][0]["message"]


# ----------------------------------------------------------------------------------- scope and lifecycle


async def test_a_partner_subscribed_to_all_its_accounts_never_receives_another_partners(
    gateway: Gateway, sessions: SessionFactory
) -> None:
    async with sessions() as session:
        ours, also_ours, theirs = [await create_account(session) for _ in range(3)]
        our_key = await partner_key(session, await create_partner(session, ours, also_ours))
        await create_partner(session, theirs)
        # Member keys make the changes (updateCompany acts on the key's own account).
        also_ours_key, theirs_key = await member_key(session, also_ours), await member_key(session, theirs)
        await session.commit()
    assert also_ours.id is not None
    await update_company(gateway.http, also_ours_key, "Before GmbH")
    async with client(gateway.ws_url, our_key) as subscriber:
        await subscriber.subscribe("all", ACCOUNT_UPDATED, after=await cursor_now(sessions))
        # A change the subscriber must not see commits first; events arrive in commit order, so had it been
        # delivered it would come before ours.
        await update_company(gateway.http, theirs_key, "Theirs GmbH")
        await update_company(gateway.http, also_ours_key, "Ours GmbH")
        payload = await subscriber.next("all")
        assert payload["data"]["accountUpdated"]["id"] == to_global_id("Account", also_ours.id)
    # Naming another partner's account is the query's error.
    async with client(gateway.ws_url, our_key) as subscriber:
        assert theirs.id is not None
        await subscriber.subscribe("theirs", ACCOUNT_UPDATED, id=to_global_id("Account", theirs.id))
        assert (await subscriber.receive())["payload"]["errors"][0]["message"] == "id: no such account"


async def test_a_partners_subscription_to_all_its_accounts_follows_the_accounts_it_manages_now(
    gateway: Gateway, sessions: SessionFactory
) -> None:
    async with sessions() as session:
        kept, granted, taken_away = [await create_account(session) for _ in range(3)]
        partner = await create_partner(session, kept, taken_away)
        our_key = await partner_key(session, partner)
        kept_key, granted_key, taken_away_key = [
            await member_key(session, account) for account in (kept, granted, taken_away)
        ]
        await session.commit()
    assert partner.id is not None and granted.id is not None and taken_away.id is not None
    await update_company(gateway.http, kept_key, "Kept GmbH")
    async with client(gateway.ws_url, our_key) as subscriber:
        await subscriber.subscribe("all", ACCOUNT_UPDATED, after=await cursor_now(sessions))
        # Granted after subscribing: followed from then on.
        async with sessions() as session:
            assert await AccountRepository(session, SYSTEM).grant_partner(partner.id, granted.id)
            await session.commit()
        await update_company(gateway.http, granted_key, "Granted GmbH")
        payload = await subscriber.next("all")
        assert payload["data"]["accountUpdated"]["id"] == to_global_id("Account", granted.id)
        # Taken away: its next change is not delivered (had it been, it would come first: commit order).
        async with sessions() as session:
            grant = await session.get(PartnerAccount, (partner.id, taken_away.id))
            await session.delete(grant)
            await session.commit()
        await update_company(gateway.http, taken_away_key, "Taken GmbH")
        await update_company(gateway.http, kept_key, "Still Kept GmbH")
        payload = await subscriber.next("all")
        assert payload["data"]["accountUpdated"]["company"]["legalName"] == "Still Kept GmbH"


async def test_a_client_that_does_not_answer_the_servers_ping_is_closed(
    database_url: str, localstripe_url: str, sessions: SessionFactory
) -> None:
    async with sessions() as session:
        key = await member_key(session, await create_account(session))
        await session.commit()
    settings = gateway_settings(
        database_url,
        localstripe_url,
        subscription_ping_seconds=0.2,
        subscription_pong_timeout_seconds=0.5,
        subscription_key_check_seconds=60,
    )
    async with (
        serve_gateway(settings) as gateway,
        client(gateway.ws_url, key) as answering,
        client(gateway.ws_url, key) as silent,
    ):

        async def answer_pings() -> int:
            """Answers the server's pings until a `pong` arrives; how many it answered."""
            answered = 0
            while (message := await answering.receive())["type"] == "ping":
                await answering.send({"type": "pong"})
                answered += 1
            assert message == {"type": "pong"}, message
            return answered

        answerer = asyncio.ensure_future(answer_pings())
        assert await silent.receive() == {"type": "ping"}
        assert await silent.closed_with() == (4504, "Pong timeout")
        # The one that answers is still open after the silent one's deadline passed.
        await answering.send({"type": "ping"})
        assert await answerer >= 1


async def test_revoking_the_key_closes_its_subscriptions(gateway: Gateway, sessions: SessionFactory) -> None:
    async with sessions() as session:
        account = await create_account(session)
        key = await member_key(session, account)
        await session.commit()
    async with client(gateway.ws_url, key) as subscriber:
        await subscriber.subscribe("1", ACCOUNT_UPDATED)
        async with sessions() as session:
            await auth.revoke_api_key(session, auth.key_prefix(key) or "")
            await session.commit()
        assert await subscriber.closed_with() == (4403, "Forbidden: the API key was revoked")


async def test_reconnecting_with_the_cursor_replays_what_was_missed(
    gateway: Gateway, sessions: SessionFactory
) -> None:
    async with sessions() as session:
        account = await create_account(session)
        key = await member_key(session, account)
        await session.commit()
    await update_company(gateway.http, key, "Initial GmbH")
    async with client(gateway.ws_url, key) as subscriber:
        await subscriber.subscribe("1", ACCOUNT_UPDATED, after=await cursor_now(sessions))
        await update_company(gateway.http, key, "First GmbH")
        cursor = (await subscriber.next("1"))["extensions"]["cursor"]
    # Disconnected: two changes nobody is told about.
    await update_company(gateway.http, key, "Second GmbH")
    await update_company(gateway.http, key, "Third GmbH")
    latest = await cursor_now(sessions)
    async with client(gateway.ws_url, key) as subscriber:
        # One answer covers both: it reads the account as it is now, and carries the later one's cursor.
        await subscriber.subscribe("1", ACCOUNT_UPDATED, after=cursor)
        replayed = await subscriber.next("1")
        assert replayed["data"]["accountUpdated"]["company"]["legalName"] == "Third GmbH"
        assert replayed["extensions"]["cursor"] == latest != cursor
        # From the latest cursor, the next change is the first thing sent.
        await subscriber.subscribe("2", ACCOUNT_UPDATED, after=latest)
        await update_company(gateway.http, key, "Fourth GmbH")
        answers = [await subscriber.receive_skipping_pings() for _ in range(2)]  # in either order
        assert sorted(answer["id"] for answer in answers) == ["1", "2"]
        for answer in answers:
            assert answer["payload"]["data"]["accountUpdated"]["company"]["legalName"] == "Fourth GmbH"


# ------------------------------------------------------------------------------------ across processes


def process_environment(database_url: str, localstripe_url: str, var_dir: Path) -> dict[str, str]:
    return {
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_url,
        "BILLING_VAR_DIR": str(var_dir),
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_API_BASE": localstripe_url,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "EMBEDDED_WORKER": "false",  # the worker is a process of its own
        "WORKER_POLL_SECONDS": "0.2",
        "PYTHONUNBUFFERED": "1",
    }


async def delivery_delay(sessions: SessionFactory, payload: dict[str, Any], received: datetime) -> float:
    """Seconds from the commit of the answer's last event (its `occurred_at`, taken just before the COMMIT)
    to the answer's arrival."""
    event_id = live_events.cursor_event_id(payload["extensions"]["cursor"])
    async with sessions() as session:
        row = await session.get(DomainEventRow, event_id)
    assert row is not None
    return (received - row.occurred_at).total_seconds()


@pytest.mark.postgres_only
@pytest.mark.parametrize("carrier", [live_events.Transport.POSTGRES, live_events.Transport.REDIS])
async def test_a_subscriber_on_one_gateway_sees_what_other_processes_commit_within_a_second(
    carrier: live_events.Transport,
    database_url: str,
    sessions: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    localstripe_url: str,
    tmp_path: Path,
) -> None:
    """Two `cli serve` processes and a `cli worker` on one PostgreSQL database. A subscriber on one gateway
    sees addFunds made on the other, a 3-D Secure top-up settled by a Stripe webhook delivered to the other,
    and an auto-recharge the worker charged: each reaches it through its gateway's LISTEN connection or, with
    REDIS_URL, through Redis (where no gateway LISTENs), within a second of the commit, with the balance it
    made. (No in-process listener can: the gateways are processes of their own.)"""
    if not database_url.startswith("postgresql"):
        pytest.skip("several gateway processes need PostgreSQL; SQLite is one process")
    environment = process_environment(database_url, localstripe_url, tmp_path)
    publishing = Settings(redis_url=None)
    if carrier is live_events.Transport.REDIS:
        await redis_reachable()
        namespace = f"test-{uuid.uuid4().hex}"
        environment |= redis_environment(namespace)
        publishing = Settings(redis_url=REDIS_URL, redis_namespace=namespace)
    account, key, card = await ready_account(sessions, stripe_gateway, localstripe)
    assert account.id is not None
    processes = Processes(environment, tmp_path)
    # This test commits too (cards, usage): as every process that commits, it publishes them to Redis.
    stop_publishing = live_events.publish_commits(publishing)

    async def next_balance(subscriber: Client) -> int:
        payload = await subscriber.next("1")
        delay = await delivery_delay(sessions, payload, datetime.now(UTC))
        assert delay < DELIVERY_SECONDS, f"{delay:.3f} s\n{processes.logs()}"
        updated = payload["data"]["accountUpdated"]
        assert updated["id"] == to_global_id("Account", account.id or 0)
        return int(updated["balance"]["available"]["minorUnits"])

    try:
        watching = await processes.gateway("watching", localstripe_url)
        paying = await processes.gateway("paying", localstripe_url)
        assert watching.url is not None and paying.url is not None
        if carrier is live_events.Transport.REDIS:
            assert await listening_backends(sessions) == 0, "with REDIS_URL no gateway LISTENs"
        ws_url = socket_url(watching.url)
        async with (
            client(ws_url, key) as subscriber,
            httpx.AsyncClient(base_url=paying.url, timeout=WAIT_SECONDS) as http,
        ):
            await subscriber.subscribe("1", ACCOUNT_UPDATED, after=await cursor_now(sessions))

            # addFunds on the other gateway.
            added = await add_funds(http, key, card, "25.00", "processes-1")
            assert added["status"] == "SUCCEEDED"
            assert await next_balance(subscriber) == int(added["balance"]["minorUnits"]) == 2_500

            # A 3-D Secure top-up: nothing moves until Stripe's webhook, delivered to the other gateway.
            secure = await payment_methods.attach(
                sessions, SYSTEM, stripe_gateway, account.id, await localstripe.card(THREE_D_SECURE_CARD)
            )
            assert secure.id is not None
            assert await next_balance(subscriber) == 2_500  # the card itself, committed by this test
            secure_id = to_global_id("PaymentMethod", secure.id)
            pending = await add_funds(http, key, secure_id, "30.00", "processes-2")
            assert pending["status"] == "REQUIRES_ACTION"
            intent_id = pending["clientSecret"].split("_secret_")[0]
            await localstripe.complete_3ds(intent_id, pending["clientSecret"])
            succeeded = await localstripe.retrieve(f"/v1/payment_intents/{intent_id}")
            webhook = await deliver(http, event("payment_intent.succeeded", succeeded))
            assert webhook.json()["rejected"] is False, webhook.text
            assert await next_balance(subscriber) == 5_500

            # Usage takes the balance below the auto-recharge threshold; a worker process charges the card.
            async with sessions() as session:
                await create_lead_plan(session, account)
                owned = await session.get(PaymentMethod, int(from_global_id(card, "PaymentMethod", "card")))
                assert owned is not None
                await enable_auto_recharge(
                    session, account, owned, threshold_minor=5_000, amount_minor=10_000
                )
                await record_usage(session, REPORTER, [call(account, datetime.now(UTC), cost="10.00")])
                await session.commit()
            assert await next_balance(subscriber) == 4_500
            await processes.worker("worker", localstripe_url)
            assert await next_balance(subscriber) == 14_500
    finally:
        await processes.stop_all()
        await stop_publishing()


def redis_environment(namespace: str, **settings: str) -> dict[str, str]:
    """Processes sharing the test's Redis under a namespace of the test's own (runs in parallel share Redis)."""
    return {"REDIS_URL": REDIS_URL, "REDIS_NAMESPACE": namespace, **settings}


async def listening_backends(sessions: SessionFactory) -> int:
    """Connections to the test's database that LISTEN (their last statement, as PostgreSQL shows it)."""
    activity = table("pg_stat_activity", column("datname"), column("query"))
    statement = (
        select(func.count())
        .select_from(activity)
        .where(activity.c.datname == func.current_database(), activity.c.query.ilike("LISTEN%"))
    )
    async with sessions() as session:
        return (await session.exec(statement)).one()


@pytest.mark.postgres_only
async def test_with_redis_gateways_that_lose_it_connect_again(
    database_url: str,
    sessions: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    localstripe_url: str,
    tmp_path: Path,
) -> None:
    """Two `cli serve` processes sharing a Redis, a subscriber on one and top-ups on the other. Redis drops
    every connection of theirs: they log it and connect again, and the next top-up still arrives."""
    if not database_url.startswith("postgresql"):
        pytest.skip("several gateway processes need PostgreSQL; SQLite is one process")
    await redis_reachable()
    namespace = f"test-{uuid.uuid4().hex}"
    _, key, card = await ready_account(sessions, stripe_gateway, localstripe)
    environment = process_environment(database_url, localstripe_url, tmp_path) | redis_environment(namespace)
    processes = Processes(environment, tmp_path)
    redis = Redis.from_url(REDIS_URL, decode_responses=True)

    async def next_balance(subscriber: Client) -> int:
        payload = await subscriber.next("1")
        return int(payload["data"]["accountUpdated"]["balance"]["available"]["minorUnits"])

    try:
        watching = await processes.gateway("watching", localstripe_url)
        paying = await processes.gateway("paying", localstripe_url)
        assert watching.url is not None and paying.url is not None
        async with (
            client(socket_url(watching.url), key) as subscriber,
            httpx.AsyncClient(base_url=paying.url, timeout=WAIT_SECONDS) as http,
        ):
            await subscriber.subscribe("1", ACCOUNT_UPDATED, after=await cursor_now(sessions))
            await add_funds(http, key, card, "25.00", "redis-1")
            assert await next_balance(subscriber) == 2_500

            # Redis drops the gateways' connections (subscriptions, publisher, connection counts).
            ours = [c for c in await redis.client_list() if c["name"].startswith(f"{namespace}:")]
            assert [c["name"] for c in ours].count(f"{namespace}:live-events") == 2, ours
            for connection in ours:
                await redis.client_kill_filter(_id=connection["id"])
            await add_funds(http, key, card, "25.00", "redis-2")
            assert await next_balance(subscriber) == 5_000, processes.logs()
            assert processes.exited() == []
            assert "Redis pub/sub for domain events lost" in watching.log.read_text(), processes.logs()
    finally:
        await processes.stop_all()
        await redis.aclose()


@pytest.mark.postgres_only
async def test_with_redis_the_connections_per_key_limit_holds_across_gateways(
    database_url: str, sessions: SessionFactory, localstripe_url: str, tmp_path: Path
) -> None:
    """Three connections per key over two gateways: a fourth on either is refused, for as long as the three
    stay open (their gateway renews them); once a gateway is killed its connections stop counting within the
    TTL, and a new one is admitted."""
    if not database_url.startswith("postgresql"):
        pytest.skip("several gateway processes need PostgreSQL; SQLite is one process")
    await redis_reachable()
    async with sessions() as session:
        key = await member_key(session, await create_account(session))
        await session.commit()
    ttl_seconds = 1.0
    limits = {
        "SUBSCRIPTION_CONNECTIONS_PER_KEY": "3",
        "SUBSCRIPTION_CONNECTION_TTL_SECONDS": str(ttl_seconds),
    }
    environment = process_environment(database_url, localstripe_url, tmp_path) | redis_environment(
        f"test-{uuid.uuid4().hex}", **limits
    )
    processes = Processes(environment, tmp_path)
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}

    async def admitted(url: str) -> bool:
        async with client(url) as candidate:
            await candidate.send(init)
            try:
                return await candidate.receive() == {"type": "connection_ack"}
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 1013, closed
                return False

    try:
        first = await processes.gateway("first", localstripe_url)
        second = await processes.gateway("second", localstripe_url)
        assert first.url is not None and second.url is not None
        on_first, on_second = socket_url(first.url), socket_url(second.url)
        async with client(on_first, key), client(on_first, key), client(on_second, key):
            await asyncio.sleep(3 * ttl_seconds)  # open longer than the TTL: only renewals keep them counted
            async with client(on_second) as fourth:
                await fourth.send(init)
                assert await fourth.closed_with() == (1013, "Too many open connections for this API key")
            assert not await admitted(on_first)
            await processes.kill(first)  # its two connections are never released, only no longer renewed
            async with asyncio.timeout(WAIT_SECONDS):
                while not await admitted(on_second):  # noqa: ASYNC110
                    await asyncio.sleep(
                        0.1
                    )  # polling until the killed gateway's entries expire; bounded above
    finally:
        await processes.stop_all()
