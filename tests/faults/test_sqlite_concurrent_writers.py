"""SQLite, the default database (issue 7): a request, the worker and Stripe's webhooks writing at the same
moment, fifty times over, on a real database file with real engines (the gateway's and a worker's of its own,
as `cli worker` would have), never the test's rolled-back connection.

Each round sends, at once: a usage batch (debits that schedule auto-recharges), a top-up, a worker pass (which
charges due recharges) and the signed `payment_intent.succeeded` of every charge the moment Stripe made it,
delivered twice like Stripe's retries. Nothing may answer "database is locked", nothing may fail, and
afterwards every count matches. Stripe is the HTTP stub of tests/support/slow_stripe.py (with no latency): webhooks
name its PaymentIntents, which the gateway reads back from it.
"""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, func, select

from billing.auto_recharge import engine as recharge_engine
from billing.config import Environment
from billing.db import SessionFactory, create_engine, read_session, session_factory, unit_of_work
from billing.keys import service as auth
from billing.stripe_gateway import StripeGateway
from models import (
    PrincipalKind,
    Recharge,
    RechargeStatus,
    StripeEvent,
    Transaction,
    TransactionKind,
    TransactionStatus,
    UsageEvent,
)
from models.stripe_webhooks import StripeEventOutcome
from models.types import utcnow
from schema.node import to_global_id
from tests.conftest import migrate
from tests.support.factories import create_account, create_company, create_payment_method, member_key
from tests.support.gateway import open_gateway
from tests.support.graphql_client import post_graphql
from tests.support.ledger_checks import checked_balance
from tests.support.payload_unions import union_members
from tests.support.slow_stripe import SlowStripe, slow_stripe
from tests.support.stripe_server import stripe_settings
from tests.support.usage_factories import create_lead_plan, enable_auto_recharge
from tests.support.webhook_helpers import deliver, event

ROUNDS = 50
ACCOUNTS = 3
EVENTS_PER_BATCH = 2
USAGE_COST_MINOR = 3_000  # per event: two rounds take an account below its 50.00 threshold
TOP_UP_MINOR = 2_000
WAIT_SECONDS = 10.0

RECORD_USAGE = """
mutation ($events: [UsageEventInput!]!) {
  recordUsage(events: $events) { __typename ... on RecordUsageSuccess { recorded } ... on Error { message } }
}
"""
ADD_FUNDS = """
mutation ($input: AddFundsInput!) {
  addFunds(input: $input) { __typename ... on AddFundsSuccess { status } ... on Error { message } }
}
"""


@pytest.fixture
async def database_file(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated SQLite file; the engine returned is the test's own, for seeding and checking."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'billing.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(migrate)
    yield engine
    await engine.dispose()


def answered(response: httpx.Response, union: str) -> dict[str, Any]:
    """The payload of a 200 GraphQL answer, a member of its union; anything else (a 500, a 503 shed, an
    error such as "database is locked") fails the test."""
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    body = response.json()
    assert not body.get("errors"), body
    (payload,) = body["data"].values()
    assert payload["__typename"] in union_members(union), payload
    return dict(payload)


@dataclass(frozen=True)
class Caller:
    account_id: int
    key: str
    card_id: int


@dataclass
class Writers:
    """The three kinds of writer: requests to the gateway, the worker (engine of its own), Stripe's webhooks."""

    client: httpx.AsyncClient
    stripe: SlowStripe
    worker_sessions: SessionFactory
    worker_gateway: StripeGateway
    reporter: str
    callers: list[Caller]
    delivered: list[str] = field(default_factory=list)  # event ids
    usage_events: int = 0

    async def usage(self, round_: int) -> None:
        events = [
            {
                "externalId": f"call-{round_}-{index}",
                "accountId": to_global_id(
                    "Account", self.callers[(round_ + index) % len(self.callers)].account_id
                ),
                "occurredAt": (utcnow() - timedelta(minutes=1)).isoformat(),
                "category": "call",
                "cost": f"{USAGE_COST_MINOR // 100}.00",
                "durationSeconds": 60,
            }
            for index in range(EVENTS_PER_BATCH)
        ]
        self.usage_events += len(events)
        response = await post_graphql(self.client, self.reporter, RECORD_USAGE, {"events": events})
        payload = answered(response, "RecordUsagePayload")
        assert payload == {"__typename": "RecordUsageSuccess", "recorded": len(events)}, payload

    async def top_up(self, round_: int) -> None:
        caller = self.callers[round_ % len(self.callers)]
        request = {
            "paymentMethodId": to_global_id("PaymentMethod", caller.card_id),
            "amount": f"{TOP_UP_MINOR // 100}.00",
            "idempotencyKey": f"sqlite-{round_}",
        }
        payload = answered(
            await post_graphql(self.client, caller.key, ADD_FUNDS, {"input": request}), "AddFundsPayload"
        )
        assert payload == {"__typename": "AddFundsSuccess", "status": "SUCCEEDED"}, payload

    async def worker_pass(self) -> None:
        await recharge_engine.run_once(self.worker_sessions, self.worker_gateway)

    async def webhooks(self, *, wait: bool) -> None:
        """The succeeded event of each PaymentIntent created so far (waiting for the first one when `wait`),
        each delivered twice at once like Stripe's retries."""
        intents = [await asyncio.wait_for(self.stripe.created.get(), WAIT_SECONDS)] if wait else []
        while not self.stripe.created.empty():
            intents.append(self.stripe.created.get_nowait())
        for intent in intents:
            body = event("payment_intent.succeeded", intent)
            self.delivered.append(body["id"])
            for response in await asyncio.gather(deliver(self.client, body), deliver(self.client, body)):
                assert response.status_code == 200, response.text


async def seed(engine: AsyncEngine) -> tuple[str, list[Caller]]:
    """Accounts ready for top-ups and auto-recharge (threshold 50.00, amount 100.00), and a reporter key."""
    async with unit_of_work(session_factory(engine)) as session:
        _, reporter = await auth.create_api_key(
            session, kind=PrincipalKind.USAGE_REPORTER, name="sqlite test"
        )
        callers = []
        for index in range(ACCOUNTS):
            account = await create_account(session)
            account.stripe_customer_id = f"cus_sqlite_{index}"
            await create_company(session, account)
            card = await create_payment_method(session, account)
            await create_lead_plan(session, account)
            await enable_auto_recharge(session, account, card, threshold_minor=5_000, amount_minor=10_000)
            assert account.id is not None and card.id is not None
            callers.append(Caller(account.id, await member_key(session, account), card.id))
    return reporter, callers


async def test_a_request_the_worker_and_webhooks_writing_at_once_lose_nothing(
    database_file: AsyncEngine,
) -> None:
    reporter, callers = await seed(database_file)
    async with slow_stripe(latency_seconds=0.0) as (stripe_url, stripe):
        settings = stripe_settings(
            stripe_url,
            environment=Environment.TEST,
            database_url=database_file.url.render_as_string(hide_password=False),
        )
        worker_engine = create_engine(settings.database_url)  # the worker's own, as `cli worker` has
        try:
            async with open_gateway(settings, request_timeout=60) as client:
                writers = Writers(
                    client,
                    stripe,
                    session_factory(worker_engine),
                    StripeGateway.from_settings(settings),
                    reporter,
                    callers,
                )
                for round_ in range(ROUNDS):
                    await asyncio.wait_for(
                        asyncio.gather(
                            writers.usage(round_),
                            writers.top_up(round_),
                            writers.worker_pass(),
                            writers.webhooks(wait=True),  # at least the top-up's charge
                        ),
                        WAIT_SECONDS * 3,
                    )
                # The recharges the last batches scheduled, and their events: nothing is left in flight.
                await writers.worker_pass()
                await writers.webhooks(wait=False)
        finally:
            await worker_engine.dispose()
    await check_nothing_lost(database_file, writers, stripe)


async def check_nothing_lost(engine: AsyncEngine, writers: Writers, stripe: SlowStripe) -> None:
    async with read_session(session_factory(engine)) as session:
        assert (
            await session.exec(select(func.count()).select_from(UsageEvent))
        ).one() == writers.usage_events
        entries = (await session.exec(select(Transaction))).all()
        top_ups = [e for e in entries if e.kind == TransactionKind.TOP_UP]
        assert len(top_ups) == ROUNDS and all(e.status == TransactionStatus.SUCCEEDED for e in top_ups)
        assert not [e for e in entries if e.status == TransactionStatus.PENDING]
        # Every charge credited once: by its own PaymentIntent, however many webhooks and writers raced.
        credited = [
            e.stripe_payment_intent_id
            for e in entries
            if e.kind in (TransactionKind.TOP_UP, TransactionKind.AUTO_RECHARGE)
            and e.status == TransactionStatus.SUCCEEDED
        ]
        assert len(credited) == len(set(credited)) == stripe.charges
        recharges = (await session.exec(select(Recharge))).all()
        assert not [r for r in recharges if r.status == RechargeStatus.PROCESSING], recharges
        # The monthly limit counts what was charged: each succeeded recharge is one succeeded entry, and no
        # recharge whose money arrived is canceled or failed (one called off before charging has no entry).
        recharged = {r.transaction_id for r in recharges if r.status == RechargeStatus.SUCCEEDED}
        recharge_entries = {
            e.id
            for e in entries
            if e.kind == TransactionKind.AUTO_RECHARGE and e.status == TransactionStatus.SUCCEEDED
        }
        assert recharged == recharge_entries and recharged, recharges
        events = (
            await session.exec(select(StripeEvent).where(col(StripeEvent.id).in_(writers.delivered)))
        ).all()
        assert sorted(e.id for e in events) == sorted(writers.delivered)
        assert all(e.outcome == StripeEventOutcome.PROCESSED for e in events), [
            (e.id, e.rejection_reason) for e in events if e.outcome != StripeEventOutcome.PROCESSED
        ]
        for caller in writers.callers:
            await checked_balance(session, caller.account_id)
