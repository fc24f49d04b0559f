"""Money under faults (issue 7): two gateways and two workers as real processes on one PostgreSQL database and
one localstripe, a few hundred mixed operations over HTTP, one gateway and one worker SIGKILLed mid-charge and
restarted. Then the ledger is checked against itself and against the stand-in's own list of PaymentIntents.

localstripe ignores idempotency keys, so a second charge for one ledger entry is a second PaymentIntent there:
"at most one charge per entry" is checked by our own metadata (`transaction_id`), not by Stripe's memory.
Each process talks to localstripe through its own tap (tests/support/charge_tap.py), which lets the test kill it in the
worst window: the card is charged and the process never hears back.
"""

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, func, select

from billing.db import create_engine, read_session, session_factory, unit_of_work
from billing.keys import service as auth
from devtools import stripe_standin
from devtools.stripe_standin import STRIPE_KEY, WEBHOOK_SECRET, LocalStripe
from models import (
    Account,
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
from schema.node import from_global_id, to_global_id
from tests.conftest import migrated_database
from tests.support.charge_tap import ChargeTap, charge_tap
from tests.support.factories import create_account
from tests.support.failover_client import Attempt, FailoverClient
from tests.support.gateway_processes import Processes, Spawned
from tests.support.payload_unions import union_members

ACCOUNTS = 10
TOP_UPS_PER_ACCOUNT = 8
REPLAYS_PER_ACCOUNT = 3
SETTINGS_CHANGES_PER_ACCOUNT = 3
CARD_CHURNS_PER_ACCOUNT = 2
USAGE_BATCHES = 40
EVENTS_PER_BATCH = 5
CONCURRENCY = 12
# The kill comes once this share of the operations has finished, so load runs before, during and after it.
KILL_AFTER_SHARE = 0.25
KILL_WAIT_SECONDS = 30.0
LOAD_SECONDS = 240.0  # the whole load, kills and restarts included (about 40 s on an idle 2-core machine)
DRAIN_SECONDS = 60.0
CREDIT_KINDS = (TransactionKind.TOP_UP, TransactionKind.AUTO_RECHARGE)
IN_FLIGHT = (RechargeStatus.SCHEDULED, RechargeStatus.PROCESSING)

UPDATE_COMPANY = """
mutation ($input: UpdateCompanyInput!) { updateCompany(input: $input) { __typename ... on Error { message } } }
"""
ATTACH = """
mutation ($input: AttachPaymentMethodInput!) {
  attachPaymentMethod(input: $input) {
    __typename ... on PaymentMethodSuccess { paymentMethod { id } } ... on Error { message }
  }
}
"""
DELETE = """
mutation ($input: DeletePaymentMethodInput!) {
  deletePaymentMethod(input: $input) { __typename ... on Error { message } }
}
"""
ADD_FUNDS = """
mutation ($input: AddFundsInput!) {
  addFunds(input: $input) {
    __typename
    ... on AddFundsSuccess { status transaction { id } }
    ... on PaymentDeclinedError { transaction { id } }
    ... on Error { message }
  }
}
"""
RECORD_USAGE = """
mutation ($events: [UsageEventInput!]!) {
  recordUsage(events: $events) {
    __typename ... on RecordUsageSuccess { recorded duplicates } ... on Error { message }
  }
}
"""
CREATE_LEAD_PLAN = """
mutation ($input: CreateLeadPlanInput!) { createLeadPlan(input: $input) { __typename ... on Error { message } } }
"""
AUTO_RECHARGE = """
mutation ($input: AutoRechargeInput!) { autoRecharge(input: $input) { __typename ... on Error { message } } }
"""
COMPANY: dict[str, Any] = {
    "legalName": "Nordlicht Solar GmbH",
    "registrationNumber": "HRB 12345",
    "phone": "030 1234567",
    "address": {"line1": "Unter den Linden 1", "city": "Berlin", "postalCode": "10117", "country": "DE"},
}


@pytest.fixture
async def fault_database() -> AsyncIterator[str]:
    """A PostgreSQL database of its own, migrated (skipped, or failed under REQUIRE_POSTGRES, when PostgreSQL
    cannot be reached, like every PostgreSQL test)."""
    async with migrated_database("postgresql", "faults") as url:
        yield url


def process_environment(database_url: str, var_dir: Path) -> dict[str, str]:
    return {
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_url,
        "BILLING_VAR_DIR": str(var_dir),
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_MAX_NETWORK_RETRIES": "0",  # a duplicate charge must come from our logic, never the SDK's
        "STRIPE_TIMEOUT_SECONDS": "15",
        "EMBEDDED_WORKER": "false",  # the two workers run as processes of their own
        "WORKER_POLL_SECONDS": "0.2",
        # Short enough to heal within the test: a dead worker's recharge and a dead gateway's top-up.
        "RECHARGE_LEASE_SECONDS": "3",
        "RECHARGE_HEARTBEAT_SECONDS": "1",
        "RECONCILE_INTERVAL_SECONDS": "1",
        "RECONCILE_PENDING_SECONDS": "3",
        "DB_POOL_SIZE": "5",
        "DB_MAX_OVERFLOW": "5",
        "RETRY_AFTER_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    }


@dataclass
class SeededAccount:
    id: int
    key: str
    card: str = ""  # the global id of the card auto-recharge and most top-ups use


@dataclass
class Outcomes:
    """What the clients were told, for the checks after the run."""

    top_up_answers: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )  # by key
    usage_cost_minor: Counter[int] = field(default_factory=Counter)  # account id -> cost of its events
    usage_events: set[str] = field(default_factory=set)
    finished: int = 0


@dataclass(frozen=True)
class Operation:
    run: Callable[[], Awaitable[None]]
    after: asyncio.Event | None = None  # awaited before the operation takes one of the concurrency slots


def money(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


@dataclass(frozen=True)
class StandIn:
    """localstripe through the test's own HTTP client (generous timeouts: the machine may be busy)."""

    url: str
    http: httpx.AsyncClient

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {STRIPE_KEY}"}
        response = await self.http.request(method, f"{self.url}{path}", headers=headers, **kwargs)
        response.raise_for_status()
        return dict(response.json())

    async def card(self) -> str:
        """A card as Stripe Elements would create it in the browser; returns its id."""
        fields = {"type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12"}
        fields |= {"card[exp_year]": "2034", "card[cvc]": "123"}
        return str((await self._call("POST", "/v1/payment_methods", data=fields))["id"])

    async def list_all(self, path: str) -> list[dict[str, Any]]:
        """Every object of a list endpoint, page by page."""
        found: list[dict[str, Any]] = []
        while True:
            params: dict[str, Any] = {"limit": 100}
            if found:
                params["starting_after"] = found[-1]["id"]
            page = await self._call("GET", path, params=params)
            found.extend(page["data"])
            if not page["has_more"]:
                return found

    async def events(self) -> dict[str, dict[str, Any]]:
        return {event["id"]: event for event in await self.list_all("/v1/events")}


async def answer(
    client: FailoverClient, op: str, key: str, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    """The payload of one mutation, asserted to be a 200 GraphQL answer and a member of its union."""
    status, body = await client.execute(op, key, query, variables)
    assert status == 200 and not body.get("errors"), f"{op}: {status} {body}"
    ((field_name, payload),) = body["data"].items()
    union = {
        "addFunds": "AddFundsPayload",
        "recordUsage": "RecordUsagePayload",
        "autoRecharge": "AutoRechargePayload",
        "attachPaymentMethod": "AttachPaymentMethodPayload",
        "deletePaymentMethod": "DeletePaymentMethodPayload",
        "updateCompany": "UpdateCompanyPayload",
        "createLeadPlan": "LeadPlanPayload",
    }[field_name]
    assert payload["__typename"] in union_members(union), f"{op}: {payload}"
    return dict(payload)


async def seed(
    engine: AsyncEngine, client: FailoverClient, stripe: StandIn
) -> tuple[list[SeededAccount], str]:
    """Accounts and keys in the database; company, card, lead plan and auto-recharge through the API."""
    async with unit_of_work(session_factory(engine)) as session:
        _, admin = await auth.create_api_key(session, kind=PrincipalKind.ADMIN, name="fault test admin")
        _, reporter = await auth.create_api_key(session, kind=PrincipalKind.USAGE_REPORTER, name="fault test")
        accounts = []
        for _ in range(ACCOUNTS):
            account = await create_account(session, currency="USD")
            assert account.id is not None
            _, key = await auth.create_api_key(
                session, kind=PrincipalKind.MEMBER, name="fault test", account_id=account.id
            )
            accounts.append(SeededAccount(account.id, key))

    async def prepare(account: SeededAccount) -> None:
        payload = await answer(client, "seed company", account.key, UPDATE_COMPANY, {"input": COMPANY})
        assert payload["__typename"] == "UpdateCompanySuccess", payload
        attach = {"stripePaymentMethodId": await stripe.card()}
        payload = await answer(client, "seed card", account.key, ATTACH, {"input": attach})
        assert payload["__typename"] == "PaymentMethodSuccess", payload
        account.card = payload["paymentMethod"]["id"]
        plan = {
            "accountId": to_global_id("Account", account.id),
            "name": "Leads",
            "monthlyBudget": "5000.00",
            "pricePerLead": "25.00",
        }
        payload = await answer(client, "seed lead plan", admin, CREATE_LEAD_PLAN, {"input": plan})
        assert payload["__typename"] == "LeadPlanSuccess", payload
        await save_auto_recharge(
            client, account, threshold_minor=5_000, amount_minor=10_000, expect_saved=True
        )

    await asyncio.gather(*(prepare(account) for account in accounts))
    return accounts, reporter


async def save_auto_recharge(
    client: FailoverClient,
    account: SeededAccount,
    *,
    threshold_minor: int,
    amount_minor: int,
    expect_saved: bool,
) -> None:
    settings = {
        "enabled": True,
        "threshold": money(threshold_minor),
        "amount": money(amount_minor),
        "paymentMethodId": account.card,
        "monthlyLimit": "100000.00",
    }
    payload = await answer(client, "autoRecharge", account.key, AUTO_RECHARGE, {"input": settings})
    if expect_saved:
        assert payload["__typename"] == "AutoRechargeSuccess", payload


def operations(
    accounts: list[SeededAccount],
    reporter: str,
    client: FailoverClient,
    stripe: StandIn,
    outcomes: Outcomes,
) -> list[Operation]:
    """The mixed load, shuffled: top-ups (some sent twice at once, some replayed later), usage batches sent
    twice, auto-recharge settings changes, and cards attached, charged and deleted at the same moment."""
    chooser = random.Random(7)
    work: list[Operation] = []

    async def top_up(account: SeededAccount, key: str, amount: str, card: str) -> dict[str, Any]:
        request = {"paymentMethodId": card, "amount": amount, "idempotencyKey": key}
        payload = await answer(client, f"addFunds {key}", account.key, ADD_FUNDS, {"input": request})
        outcomes.top_up_answers[key].append(payload)
        return payload

    for account in accounts:
        replayable: list[tuple[str, str, asyncio.Event]] = []
        for number in range(TOP_UPS_PER_ACCOUNT):
            key = f"pay-{account.id}-{number}"
            amount = money(chooser.randrange(500, 6_000))
            done = asyncio.Event()
            twice = number % 2 == 0  # a double click: the same key twice at once

            async def first(
                account: SeededAccount = account,
                key: str = key,
                amount: str = amount,
                done: asyncio.Event = done,
                twice: bool = twice,
            ) -> None:
                sends = [top_up(account, key, amount, account.card) for _ in range(2 if twice else 1)]
                for payload in await asyncio.gather(*sends):
                    assert payload["__typename"] == "AddFundsSuccess", payload
                done.set()

            work.append(Operation(first))
            replayable.append((key, amount, done))
        for key, amount, done in chooser.sample(replayable, REPLAYS_PER_ACCOUNT):

            async def replay(account: SeededAccount = account, key: str = key, amount: str = amount) -> None:
                payload = await top_up(account, key, amount, account.card)
                assert payload["__typename"] == "AddFundsSuccess", payload

            work.append(Operation(replay, after=done))  # a retry after the first answer came back
        for _ in range(SETTINGS_CHANGES_PER_ACCOUNT):
            threshold, amount_minor = chooser.randrange(3_000, 8_000), chooser.randrange(5_000, 15_000)

            async def change(
                account: SeededAccount = account, threshold: int = threshold, amount_minor: int = amount_minor
            ) -> None:
                await save_auto_recharge(
                    client, account, threshold_minor=threshold, amount_minor=amount_minor, expect_saved=True
                )

            work.append(Operation(change))
        for number in range(CARD_CHURNS_PER_ACCOUNT):

            async def churn(account: SeededAccount = account, number: int = number) -> None:
                attach = {"stripePaymentMethodId": await stripe.card()}
                payload = await answer(client, "attach", account.key, ATTACH, {"input": attach})
                assert payload["__typename"] == "PaymentMethodSuccess", payload
                card = payload["paymentMethod"]["id"]
                # Charged and deleted at the same moment: either may win, the ledger must hold either way.
                await asyncio.gather(
                    top_up(account, f"churn-{account.id}-{number}", "7.50", card),
                    answer(client, "delete", account.key, DELETE, {"input": {"paymentMethodId": card}}),
                )

            work.append(Operation(churn))

    for batch in range(USAGE_BATCHES):
        events = []
        for index in range(EVENTS_PER_BATCH):
            account = chooser.choice(accounts)
            cost = chooser.randrange(300, 2_500)
            external_id = f"call-{batch}-{index}"
            outcomes.usage_cost_minor[account.id] += cost
            outcomes.usage_events.add(external_id)
            events.append(
                {
                    "externalId": external_id,
                    "accountId": to_global_id("Account", account.id),
                    "occurredAt": (utcnow() - timedelta(minutes=1)).isoformat(),
                    "category": "call",
                    "cost": money(cost),
                    "durationSeconds": 60,
                }
            )

        async def report(events: list[dict[str, Any]] = events, at_once: bool = batch % 2 == 0) -> None:
            # Sent twice, like a reporter that timed out: at once, or one after the other.
            async def send() -> dict[str, Any]:
                return await answer(client, "recordUsage", reporter, RECORD_USAGE, {"events": events})

            answers = await asyncio.gather(send(), send()) if at_once else [await send(), await send()]
            assert all(a["__typename"] == "RecordUsageSuccess" for a in answers), answers
            # Not "recorded once over both": a send retried after a dropped answer finds its own events.
            assert all(a["recorded"] + a["duplicates"] == len(events) for a in answers), answers

        work.append(Operation(report))
    chooser.shuffle(work)
    return work


async def unsettled(engine: AsyncEngine, stripe: StandIn, undelivered: set[str]) -> list[str]:
    """What is still in flight: pending entries, recharges not finished, Stripe events not yet recorded
    (except `undelivered`: those from before the gateways' webhook endpoints were registered)."""
    async with read_session(session_factory(engine)) as session:
        pending = (
            await session.exec(select(Transaction).where(Transaction.status == TransactionStatus.PENDING))
        ).all()
        recharges = (await session.exec(select(Recharge).where(col(Recharge.status).in_(IN_FLIGHT)))).all()
        recorded = set((await session.exec(select(StripeEvent.id))).all())
    sent = await stripe.events()
    return (
        [f"pending entry {e.id} ({e.kind}, {e.amount_minor})" for e in pending]
        + [f"recharge {r.id} {r.status}" for r in recharges]
        + [
            f"event {event_id} ({event['type']} of {event['data']['object'].get('id')}) never recorded"
            for event_id, event in sent.items()
            if event_id not in recorded | undelivered
        ]
    )


async def drain(engine: AsyncEngine, stripe: StandIn, undelivered: set[str]) -> None:
    """Wait (bounded) until the workers and webhooks have settled everything."""
    deadline = asyncio.get_running_loop().time() + DRAIN_SECONDS
    while left := await unsettled(engine, stripe, undelivered):
        assert asyncio.get_running_loop().time() < deadline, f"not drained after {DRAIN_SECONDS}s: {left}"
        await asyncio.sleep(0.25)  # polling other processes' progress; bounded by the deadline


async def check_ledger_against_stripe(engine: AsyncEngine, stripe: StandIn) -> None:
    intents = await stripe.list_all("/v1/payment_intents")
    per_entry: dict[str, list[str]] = defaultdict(list)
    for intent in intents:
        per_entry[intent["metadata"].get("transaction_id", "none")].append(intent["id"])
    charged_twice = {entry: ids for entry, ids in per_entry.items() if len(ids) > 1}
    assert not charged_twice, f"ledger entries charged more than once: {charged_twice}"
    assert "none" not in per_entry, f"PaymentIntents not tied to a ledger entry: {per_entry['none']}"

    succeeded = {i["id"]: i for i in intents if i["status"] == "succeeded"}
    credits: Counter[str] = Counter()
    async with read_session(session_factory(engine)) as session:
        entries = (await session.exec(select(Transaction))).all()
        for entry in entries:
            if entry.status != TransactionStatus.SUCCEEDED:
                continue
            if entry.kind in CREDIT_KINDS:
                paid_by = succeeded.get(entry.stripe_payment_intent_id or "")
                assert paid_by is not None, f"entry {entry.id} credited without a succeeded PaymentIntent"
                assert paid_by["metadata"]["transaction_id"] == str(entry.id), (entry.id, paid_by)
                assert (paid_by["amount"], paid_by["currency"].upper()) == (
                    entry.amount_minor,
                    entry.currency,
                )
                credits[paid_by["id"]] += 1
            elif entry.kind == TransactionKind.ADJUSTMENT and entry.idempotency_key.startswith(
                "late-success:"
            ):
                # A charge that succeeded after its entry was failed is credited by a history row of its own.
                intent_id = entry.idempotency_key.removeprefix("late-success:")
                assert intent_id in succeeded, f"late-success entry {entry.id} without its PaymentIntent"
                assert succeeded[intent_id]["amount"] == entry.amount_minor
                credits[intent_id] += 1
        not_once = {pi: credits[pi] for pi in succeeded if credits[pi] != 1}
        assert not not_once, f"succeeded PaymentIntents credited other than once: {not_once}"
        rejected = (
            await session.exec(
                select(StripeEvent).where(
                    StripeEvent.outcome == StripeEventOutcome.REJECTED,
                    col(StripeEvent.type).startswith("payment_intent."),
                )
            )
        ).all()
        # Every PaymentIntent here is a genuine charge of ours: none of their events may be refused as not ours.
        by_id = {entry.id: entry for entry in entries}
        refused = []
        for event in rejected:
            intent = (await stripe.events())[event.id]["data"]["object"]
            named = by_id.get(int(intent["metadata"]["transaction_id"]))
            refused.append((event.id, event.rejection_reason, named))
        assert not refused, f"genuine payment events rejected (event, reason, the entry it names): {refused}"


async def check_balances_and_usage(
    engine: AsyncEngine, accounts: list[SeededAccount], outcomes: Outcomes
) -> None:
    async with read_session(session_factory(engine)) as session:
        for account in accounts:
            stored = await session.get(Account, account.id)
            assert stored is not None
            total = (
                await session.exec(
                    select(func.coalesce(func.sum(Transaction.amount_minor), 0)).where(
                        Transaction.account_id == account.id,
                        Transaction.status == TransactionStatus.SUCCEEDED,
                    )
                )
            ).one()
            assert stored.balance_minor == total, f"account {account.id}: {stored.balance_minor} != {total}"
            usage = (
                await session.exec(
                    select(func.coalesce(func.sum(Transaction.amount_minor), 0)).where(
                        Transaction.account_id == account.id, Transaction.kind == TransactionKind.USAGE_CALLS
                    )
                )
            ).one()
            assert -usage == outcomes.usage_cost_minor[account.id], f"account {account.id} usage"
        recorded = (await session.exec(select(UsageEvent.external_id))).all()
        assert sorted(recorded) == sorted(outcomes.usage_events)  # each event once, none lost
        top_ups = (
            await session.exec(select(Transaction).where(Transaction.kind == TransactionKind.TOP_UP))
        ).all()
    named = {
        key: {
            from_global_id(p["transaction"]["id"], "Transaction", "id")
            for p in payloads
            if "transaction" in p
        }
        for key, payloads in outcomes.top_up_answers.items()
    }
    several = {key: outcomes.top_up_answers[key] for key, ids in named.items() if len(ids) > 1}
    assert not several, f"one idempotency key, several top-ups: {several}"
    entries = {entry.id: entry for entry in top_ups}
    answered_ids = set().union(*named.values())
    assert answered_ids <= set(entries), f"answers naming no top-up: {answered_ids - set(entries)}"
    # A top-up no answer named (its request ended in an error member, e.g. the card was deleted meanwhile) was
    # never credited: a customer told it failed must not have been charged.
    unanswered_credits = [
        e for id_, e in entries.items() if id_ not in answered_ids and e.status == TransactionStatus.SUCCEEDED
    ]
    assert not unanswered_credits, (
        unanswered_credits,
        {key: payloads for key, payloads in outcomes.top_up_answers.items() if not named[key]},
    )


def check_answers(client: FailoverClient, killed: set[str]) -> None:
    """Nothing but answers, sheds (503 with Retry-After) and dropped connections to the killed process."""

    def acceptable(attempt: Attempt) -> bool:
        if attempt.status is None:
            return attempt.gateway in killed
        if attempt.status == 503:
            return attempt.retry_after is not None
        return attempt.status == 200 and attempt.problem is None

    wrong = [attempt for attempt in client.attempts if not acceptable(attempt)]
    assert not wrong, f"{len(wrong)} bad answers, the first ones: {wrong[:10]}"


async def kill_mid_charge(processes: Processes, spawned: Spawned, tap: ChargeTap) -> str:
    """SIGKILL the process while Stripe has charged for it and the answer is held; returns the PaymentIntent."""
    tap.arm()
    await asyncio.wait_for(tap.holding.wait(), KILL_WAIT_SECONDS)
    await processes.kill(spawned)
    tap.release()
    assert tap.held_payment_intent is not None
    return tap.held_payment_intent


@pytest.mark.postgres_only
async def test_sigkilled_gateway_and_worker_lose_and_double_no_money(
    fault_database: str, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    engine = create_engine(fault_database)
    processes = Processes(process_environment(fault_database, tmp_path), tmp_path)
    try:
        with stripe_standin.running() as stripe_url:
            async with AsyncExitStack() as stack:
                taps = {
                    name: await stack.enter_async_context(charge_tap(stripe_url))
                    for name in ("gateway-a", "gateway-b", "worker-a", "worker-b")
                }
                stack.push_async_callback(processes.stop_all)
                gateways = {
                    name: await processes.gateway(name, taps[name].url) for name in ("gateway-a", "gateway-b")
                }
                workers = {
                    name: await processes.worker(name, taps[name].url) for name in ("worker-a", "worker-b")
                }
                webhooks = LocalStripe(stripe_url)
                for name, gateway in gateways.items():
                    await webhooks.deliver_webhooks_to(f"{gateway.url}/webhooks/stripe", name=name)
                http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
                stripe = StandIn(stripe_url, http)
                undelivered = set(await stripe.events())
                client = FailoverClient([g.url or "" for g in gateways.values()], http)
                accounts, reporter = await seed(engine, client, stripe)

                outcomes = Outcomes()
                work = operations(accounts, reporter, client, stripe, outcomes)
                kill_now = asyncio.Event()
                killed: set[str] = set()
                limit = asyncio.Semaphore(CONCURRENCY)

                async def run(operation: Operation) -> None:
                    if operation.after is not None:
                        await operation.after.wait()  # bounded by LOAD_SECONDS
                    async with limit:
                        await operation.run()
                    outcomes.finished += 1
                    if outcomes.finished >= len(work) * KILL_AFTER_SHARE:
                        kill_now.set()

                async def chaos() -> None:
                    await kill_now.wait()
                    gateway_a = gateways["gateway-a"]
                    killed.add(gateway_a.url or "")
                    await kill_mid_charge(processes, gateway_a, taps["gateway-a"])
                    await kill_mid_charge(processes, workers["worker-a"], taps["worker-a"])
                    assert outcomes.finished < len(work), "the kills came after the load"
                    restarted = await processes.gateway("gateway-a-restarted", taps["gateway-a"].url)
                    client.gateways[0] = restarted.url or ""
                    await webhooks.deliver_webhooks_to(f"{restarted.url}/webhooks/stripe", name="gateway-a")
                    await processes.worker("worker-a-restarted", taps["worker-a"].url)

                seeded_at = loop.time()
                async with asyncio.timeout(LOAD_SECONDS), asyncio.TaskGroup() as group:
                    group.create_task(chaos())
                    for operation in work:
                        group.create_task(run(operation))

                # Printed for a failing test only: tells a slow machine from a stalled gateway.
                loaded_at = loop.time()
                print(f"load: {loaded_at - seeded_at:.1f}s for {len(work)} operations")
                print(Counter((attempt.gateway, attempt.status) for attempt in client.attempts))
                await drain(engine, stripe, undelivered)
                print(f"drained in {loop.time() - loaded_at:.1f}s")
                assert not processes.exited(), processes.logs()
                check_answers(client, killed)
                await check_balances_and_usage(engine, accounts, outcomes)
                await check_ledger_against_stripe(engine, stripe)
    except BaseException:
        print(processes.logs())  # shown by pytest for the failing test only
        raise
    finally:
        await engine.dispose()
