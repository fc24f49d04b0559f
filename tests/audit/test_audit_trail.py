"""The audit trail: every settings change through GraphQL leaves one entry naming the key that made it, the
request (X-Request-Id), and what changed; secrets never appear; an account's trail is in its scope only; pages
walk newest first; a rolled-back change leaves nothing; API keys made and revoked through billing/keys/service.py are
recorded in the accounts they act on. Cards and company go through localstripe, as the Billing page does."""

import asyncio
import json
from typing import Any

import httpx
import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

import cli
from billing.audit import service as audit
from billing.audit.actors import STRIPE, Actor, ActorKind, acting_as
from billing.db import SessionFactory, create_engine, session_factory, unit_of_work
from billing.events import service as events
from billing.keys import service as auth
from billing.lead_plans.service import LeadPlanInput, create_lead_plan
from billing.outgoing_webhooks import service as webhooks_outgoing
from billing.pagination import encode_cursor
from billing.scope import Scope
from models import Account, DomainEventRow, PrincipalKind
from models.types import utcnow
from schema.audit import FIELD_NAMES
from schema.node import to_global_id
from tests.conftest import migrated_database
from tests.support.factories import (
    create_account,
    create_partner,
    create_payment_method,
    member_key,
    partner_key,
)
from tests.support.graphql_client import execute, execute_ok
from tests.support.stripe_server import LocalStripe
from tests.support.webhook_helpers import event, signature

AUDIT_LOG = """
query ($id: ID, $first: Int!, $after: String) {
  account(id: $id) {
    auditLog(first: $first, after: $after) {
      edges {
        cursor
        node {
          occurredAt action actor { kind name keyPrefix } requestId subjectId changes { field before after }
        }
      }
      pageInfo { hasNextPage hasPreviousPage endCursor }
    }
  }
}
"""

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
SET_DEFAULT = """
mutation ($input: PaymentMethodInput!) {
  setDefaultPaymentMethod(input: $input) { __typename ... on Error { message } }
}
"""
DELETE = """
mutation ($input: DeletePaymentMethodInput!) {
  deletePaymentMethod(input: $input) { __typename ... on Error { message } }
}
"""
CREATE_LEAD_PLAN = """
mutation ($input: CreateLeadPlanInput!) {
  createLeadPlan(input: $input) { __typename ... on LeadPlanSuccess { leadPlan { id } } ... on Error { message } }
}
"""
PAUSE_LEAD_PLAN = """
mutation ($input: ChangeLeadPlanInput!) { pauseLeadPlan(input: $input) { __typename ... on Error { message } } }
"""
RESUME_LEAD_PLAN = """
mutation ($input: ChangeLeadPlanInput!) { resumeLeadPlan(input: $input) { __typename ... on Error { message } } }
"""
AUTO_RECHARGE = """
mutation ($input: AutoRechargeInput!) { autoRecharge(input: $input) { __typename ... on Error { message } } }
"""
CREATE_ENDPOINT = """
mutation ($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) {
    __typename ... on CreateWebhookEndpointSuccess { webhookEndpoint { id } secret } ... on Error { message }
  }
}
"""
UPDATE_ENDPOINT = """
mutation ($input: UpdateWebhookEndpointInput!) {
  updateWebhookEndpoint(input: $input) { __typename ... on Error { message } }
}
"""
ROTATE_SECRET = """
mutation ($input: WebhookEndpointInput!) {
  rotateWebhookSecret(input: $input) { __typename ... on RotateWebhookSecretSuccess { secret } ... on Error { message } }
}
"""
DELETE_ENDPOINT = """
mutation ($input: WebhookEndpointInput!) {
  deleteWebhookEndpoint(input: $input) { __typename ... on Error { message } }
}
"""

COMPANY: dict[str, Any] = {
    "legalName": "Acme GmbH",
    "registrationNumber": "HRB 12345",
    "phone": "030 123456",
    "address": {"line1": "Unter den Linden 1", "city": "Berlin", "postalCode": "10117", "country": "DE"},
}

SYSTEM = Scope.system("the tests read every trail")


async def mutate(client: httpx.AsyncClient, key: str, query: str, request_id: str, **variables: Any) -> Any:
    body = await execute_ok(client, key, query, variables, headers={"X-Request-Id": request_id})
    (payload,) = body["data"].values()
    assert "Error" not in payload["__typename"], payload
    return payload


async def trail(client: httpx.AsyncClient, key: str, account: Account) -> list[dict[str, Any]]:
    """The account's whole audit trail, newest first, read page by page through GraphQL."""
    entries: list[dict[str, Any]] = []
    after = None
    while True:
        body = await execute_ok(
            client, key, AUDIT_LOG, {"id": account_id(account), "first": 100, "after": after}
        )
        log = body["data"]["account"]["auditLog"]
        entries += [edge["node"] for edge in log["edges"]]
        if not log["pageInfo"]["hasNextPage"]:
            return entries
        after = log["pageInfo"]["endCursor"]


def account_id(account: Account) -> str:
    assert account.id is not None
    return to_global_id("Account", account.id)


def changes(entry: dict[str, Any]) -> dict[str, tuple[str | None, str | None]]:
    return {change["field"]: (change["before"], change["after"]) for change in entry["changes"]}


class Auditor:
    """Runs one mutation and returns the one audit entry it added (failing if it added none or several)."""

    def __init__(self, client: httpx.AsyncClient, reader: str, account: Account) -> None:
        self.client, self.reader, self.account = client, reader, account
        self.seen = 0

    async def entry_of(self, key: str, query: str, request_id: str, **variables: Any) -> tuple[Any, Any]:
        payload = await mutate(self.client, key, query, request_id, **variables)
        entries = await trail(self.client, self.reader, self.account)
        assert len(entries) == self.seen + 1, entries[: len(entries) - self.seen]
        self.seen = len(entries)
        return payload, entries[0]


async def test_each_settings_mutation_is_recorded_once_with_who_where_and_what(
    session: AsyncSession, gateway_client: httpx.AsyncClient, localstripe: LocalStripe
) -> None:
    account = await create_account(session)
    partner = await create_partner(session, account)
    member = await member_key(session, account)
    manager = await partner_key(session, partner)
    as_member = {"kind": "MEMBER", "name": "test member", "keyPrefix": auth.key_prefix(member)}
    as_partner = {"kind": "PARTNER", "name": "test partner", "keyPrefix": auth.key_prefix(manager)}
    auditor = Auditor(gateway_client, member, account)
    assert await trail(gateway_client, member, account) == []

    _, entry = await auditor.entry_of(member, UPDATE_COMPANY, "req-company", input=COMPANY)
    assert entry["action"] == "COMPANY_CHANGED" and entry["actor"] == as_member
    assert entry["requestId"] == "req-company" and entry["subjectId"] is None
    assert changes(entry)["legalName"] == (None, "Acme GmbH")
    assert changes(entry)["phone"] == (None, "+4930123456")
    # Named as the mutation's input names them (address_line1 in the domain).
    assert changes(entry)["address.line1"] == (None, "Unter den Linden 1")
    assert changes(entry)["address.postalCode"] == (None, "10117")

    _, entry = await auditor.entry_of(
        member, UPDATE_COMPANY, "req-company-2", input={**COMPANY, "legalName": "Acme AG"}
    )
    assert entry["action"] == "COMPANY_CHANGED" and entry["requestId"] == "req-company-2"
    assert changes(entry) == {"legalName": ("Acme GmbH", "Acme AG")}  # only what changed

    card = {"stripePaymentMethodId": await localstripe.card()}
    payload, entry = await auditor.entry_of(member, ATTACH, "req-card-1", input=card)
    first_card = payload["paymentMethod"]["id"]
    assert entry["action"] == "PAYMENT_METHOD_ADDED" and entry["actor"] == as_member
    assert entry["requestId"] == "req-card-1" and entry["subjectId"] == first_card
    assert changes(entry) == {"brand": (None, "visa"), "last4": (None, "4242"), "isDefault": (None, "true")}

    card = {"stripePaymentMethodId": await localstripe.card("5555555555554444")}
    payload, entry = await auditor.entry_of(member, ATTACH, "req-card-2", input=card)
    second_card = payload["paymentMethod"]["id"]
    assert changes(entry)["isDefault"] == (None, "false")

    _, entry = await auditor.entry_of(
        member, SET_DEFAULT, "req-default", input={"paymentMethodId": second_card}
    )
    assert entry["action"] == "DEFAULT_PAYMENT_METHOD_CHANGED" and entry["requestId"] == "req-default"
    assert changes(entry) == {"paymentMethodId": (first_card, second_card)}

    plan_input = {
        "accountId": account_id(account),
        "name": "Solar leads",
        "monthlyBudget": "500",
        "pricePerLead": "25",
    }
    payload, entry = await auditor.entry_of(manager, CREATE_LEAD_PLAN, "req-plan", input=plan_input)
    plan_id = payload["leadPlan"]["id"]
    assert entry["action"] == "LEAD_PLAN_CHANGED" and entry["actor"] == as_partner
    assert entry["requestId"] == "req-plan" and entry["subjectId"] == plan_id
    assert changes(entry)["monthlyBudget"] == (None, "50000")
    assert changes(entry)["status"] == (None, "active")

    _, entry = await auditor.entry_of(manager, PAUSE_LEAD_PLAN, "req-pause", input={"leadPlanId": plan_id})
    assert changes(entry) == {"status": ("active", "paused")} and entry["requestId"] == "req-pause"
    _, entry = await auditor.entry_of(manager, RESUME_LEAD_PLAN, "req-resume", input={"leadPlanId": plan_id})
    assert changes(entry) == {"status": ("paused", "active")}

    settings = {"enabled": True, "threshold": "10", "amount": "50", "monthlyLimit": "200"}
    _, entry = await auditor.entry_of(member, AUTO_RECHARGE, "req-recharge", input=settings)
    assert entry["action"] == "AUTO_RECHARGE_SETTINGS_CHANGED" and entry["actor"] == as_member
    assert entry["requestId"] == "req-recharge"
    assert changes(entry) == {
        "enabled": (None, "true"),
        "threshold": (None, "1000"),
        "amount": (None, "5000"),
        "monthlyLimit": (None, "20000"),
        "paymentMethodId": (None, second_card),
    }

    _, entry = await auditor.entry_of(member, DELETE, "req-delete", input={"paymentMethodId": first_card})
    assert entry["action"] == "PAYMENT_METHOD_REMOVED" and entry["subjectId"] == first_card
    assert changes(entry) == {"brand": ("visa", None), "last4": ("4242", None)}

    # A partner reads the same trail for its account; no key and no client secret appears anywhere in it.
    everything = await trail(gateway_client, manager, account)
    assert everything == await trail(gateway_client, member, account) and len(everything) == 10
    text = json.dumps(everything)
    assert member not in text and manager not in text
    assert "secret" not in text.lower()


async def test_webhook_endpoint_mutations_are_recorded_and_their_secret_never_is(
    session: AsyncSession, gateway_client: httpx.AsyncClient
) -> None:
    account = await create_account(session)
    member = await member_key(session, account)
    as_member = {"kind": "MEMBER", "name": "test member", "keyPrefix": auth.key_prefix(member)}
    auditor = Auditor(gateway_client, member, account)
    hook = {"url": "http://127.0.0.1:9/hooks", "eventTypes": ["balance.low"], "description": "crm"}

    payload, entry = await auditor.entry_of(member, CREATE_ENDPOINT, "req-hook", input=hook)
    endpoint_id = payload["webhookEndpoint"]["id"]
    secrets = [payload["secret"]]
    assert entry["action"] == "WEBHOOK_ENDPOINT_CHANGED" and entry["actor"] == as_member
    assert entry["requestId"] == "req-hook" and entry["subjectId"] == endpoint_id
    assert changes(entry) == {
        "url": (None, "http://127.0.0.1:9/hooks"),
        "description": (None, "crm"),
        "eventTypes": (None, "balance.low"),
        "status": (None, "active"),
    }

    change = {
        "webhookEndpointId": endpoint_id,
        "eventTypes": ["balance.low", "topup.succeeded"],
        "enabled": False,
    }
    _, entry = await auditor.entry_of(member, UPDATE_ENDPOINT, "req-hook-update", input=change)
    assert entry["requestId"] == "req-hook-update"
    assert changes(entry) == {
        "eventTypes": ("balance.low", "balance.low, topup.succeeded"),
        "status": ("active", "disabled"),
    }

    payload, entry = await auditor.entry_of(
        member, ROTATE_SECRET, "req-rotate", input={"webhookEndpointId": endpoint_id}
    )
    secrets.append(payload["secret"])
    assert entry["action"] == "WEBHOOK_SECRET_ROTATED" and entry["changes"] == []
    assert entry["requestId"] == "req-rotate" and entry["subjectId"] == endpoint_id

    _, entry = await auditor.entry_of(
        member, DELETE_ENDPOINT, "req-hook-delete", input={"webhookEndpointId": endpoint_id}
    )
    assert entry["action"] == "WEBHOOK_ENDPOINT_CHANGED" and entry["requestId"] == "req-hook-delete"
    assert changes(entry)["url"] == ("http://127.0.0.1:9/hooks", None)

    text = json.dumps(await trail(gateway_client, member, account))
    assert len(set(secrets)) == 2 and all(secret.startswith("whsec_") for secret in secrets)
    assert not any(secret in text or secret.removeprefix("whsec_") in text for secret in secrets)


async def test_an_account_trail_is_in_the_account_scope_only(
    session: AsyncSession, session_factory: SessionFactory, gateway_client: httpx.AsyncClient
) -> None:
    mine, theirs = await create_account(session), await create_account(session)
    own_partner, other_partner = await create_partner(session, mine), await create_partner(session, theirs)
    member, manager = await member_key(session, mine), await partner_key(session, own_partner)
    stranger = await partner_key(session, other_partner)
    async with unit_of_work(session_factory) as work:
        await auth.create_api_key(work, kind=PrincipalKind.MEMBER, name="ci", account_id=mine.id)

    for key in (member, manager):
        assert [entry["action"] for entry in await trail(gateway_client, key, mine)] == ["API_KEY_CREATED"]
    for key, foreign in ((member, theirs), (stranger, mine)):
        body = await execute(gateway_client, key, AUDIT_LOG, {"id": account_id(foreign), "first": 5})
        assert [error["message"] for error in body["errors"]] == ["id: no such account"]
        assert body["data"] is None
    # The other account's trail is its own: the key made for `mine` is not in it.
    assert await trail(gateway_client, stranger, theirs) == []


async def test_pages_walk_newest_first_and_cursors_are_parsed_strictly(
    session: AsyncSession, session_factory: SessionFactory, gateway_client: httpx.AsyncClient
) -> None:
    account = await create_account(session)
    member = await member_key(session, account)
    for number in range(5):
        async with unit_of_work(session_factory) as work:
            events.record(
                work, events.CompanyChanged(account.id or 0, None, {"legal_name": f"Name {number}"})
            )
            # A balance move in the same transaction is not a settings change: not in the trail.
            events.balance_moved(work, account.id or 0, "USD", number, number + 1)

    names: list[str | None] = []
    after = None
    pages = 0
    while True:
        body = await execute(
            gateway_client, member, AUDIT_LOG, {"id": account_id(account), "first": 2, "after": after}
        )
        log = body["data"]["account"]["auditLog"]
        assert log["pageInfo"]["hasPreviousPage"] is (after is not None)
        names += [changes(edge["node"])["legalName"][1] for edge in log["edges"]]
        pages += 1
        if not log["pageInfo"]["hasNextPage"]:
            break
        after = log["pageInfo"]["endCursor"]
        assert after == log["edges"][-1]["cursor"]
    assert names == [f"Name {number}" for number in reversed(range(5))] and pages == 3

    refused = {
        "not base64!": "after: not a valid cursor",
        encode_cursor("transaction", "2026-01-01T00:00:00+00:00", "1"): "after: not a valid cursor",
        encode_cursor(audit.CURSOR_KIND, "0"): "after: not a valid cursor",
        encode_cursor(audit.CURSOR_KIND, str(2**63)): "after: not a valid cursor",
        encode_cursor(audit.CURSOR_KIND, "01"): "after: not a valid cursor",
    }
    for cursor, message in refused.items():
        body = await execute(
            gateway_client, member, AUDIT_LOG, {"id": account_id(account), "first": 2, "after": cursor}
        )
        assert [error["message"] for error in body["errors"]] == [message], cursor
    for first in (0, 101):
        body = await execute(gateway_client, member, AUDIT_LOG, {"id": account_id(account), "first": first})
        assert [error["message"] for error in body["errors"]] == [
            f"first: must be between 1 and 100, got {first}"
        ]
    # A cursor beyond any 32-bit id still reads (event ids are 64-bit): everything is older than it.
    far = encode_cursor(audit.CURSOR_KIND, str(2**40))
    body = await execute(
        gateway_client, member, AUDIT_LOG, {"id": account_id(account), "first": 100, "after": far}
    )
    assert len(body["data"]["account"]["auditLog"]["edges"]) == 5


async def test_what_a_stripe_webhook_changes_is_recorded_as_stripe(
    session: AsyncSession, session_factory: SessionFactory, gateway_client: httpx.AsyncClient
) -> None:
    """A card removed in the Stripe portal: Stripe's signed `payment_method.detached` removes our mirror."""
    account = await create_account(session)
    method = await create_payment_method(session, account)
    assert account.id is not None
    body = json.dumps(
        event("payment_method.detached", {"id": method.stripe_payment_method_id, "object": "payment_method"})
    ).encode()
    response = await gateway_client.post(
        "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": signature(body), "X-Request-Id": "req-stripe"},
    )
    assert response.status_code == 200, response.text
    async with session_factory() as reader:
        (entry,) = (await audit.audit_log(reader, SYSTEM, account.id, first=10)).items
    assert entry.action is audit.AuditAction.PAYMENT_METHOD_REMOVED
    assert entry.actor == STRIPE and entry.request_id == "req-stripe"


class Refused(Exception):
    """Raised inside a unit of work to roll it back."""


async def test_a_rolled_back_change_leaves_no_entry(
    session: AsyncSession, session_factory: SessionFactory
) -> None:
    account = await create_account(session)
    partner = await create_partner(session, account)
    principal = auth.Principal(kind=PrincipalKind.PARTNER, api_key_id=0, partner_id=partner.id)
    plan = LeadPlanInput(name="Leads", monthly_budget="500", price_per_lead="25")
    assert account.id is not None
    with pytest.raises(Refused):
        async with unit_of_work(session_factory) as work:
            await create_lead_plan(work, principal, account.id, plan)
            await auth.create_api_key(work, kind=PrincipalKind.MEMBER, name="doomed", account_id=account.id)
            raise Refused
    async with session_factory() as reader:
        assert (await audit.audit_log(reader, SYSTEM, account.id, first=10)).items == []
        # The same changes committed are recorded: the test can tell the difference.
        async with unit_of_work(session_factory) as work:
            await create_lead_plan(work, principal, account.id, plan)
        entries = (await audit.audit_log(reader, SYSTEM, account.id, first=10)).items
        assert [entry.action for entry in entries] == [audit.AuditAction.LEAD_PLAN_CHANGED]


async def test_api_keys_created_and_revoked_are_recorded_without_their_secret(
    session: AsyncSession, session_factory: SessionFactory
) -> None:
    account, managed, elsewhere = [await create_account(session) for _ in range(3)]
    partner = await create_partner(session, account, managed)
    assert account.id is not None and managed.id is not None and elsewhere.id is not None

    async with unit_of_work(session_factory) as work:
        key, raw = await auth.create_api_key(
            work, kind=PrincipalKind.MEMBER, name="ci", account_id=account.id
        )
    with acting_as(Actor(ActorKind.ADMIN, "ops", "0123456789ab")):
        async with unit_of_work(session_factory) as work:
            _, partner_raw = await auth.create_api_key(
                work, kind=PrincipalKind.PARTNER, name="crm", partner_id=partner.id
            )
    with acting_as(STRIPE):  # any actor in force is the one recorded
        async with unit_of_work(session_factory) as work:
            await auth.revoke_api_key(work, key.prefix)

    async with session_factory() as reader:
        revoked, partner_created, created = (
            await audit.audit_log(reader, SYSTEM, account.id, first=10)
        ).items
        assert created.action is audit.AuditAction.API_KEY_CREATED
        assert created.actor == Actor(ActorKind.SYSTEM) and created.request_id is None
        assert {c.field: (c.before, c.after) for c in created.changes} == {
            "name": (None, "ci"),
            "prefix": (None, key.prefix),
            "kind": (None, "member"),
        }
        assert partner_created.actor == Actor(ActorKind.ADMIN, "ops", "0123456789ab")
        assert revoked.action is audit.AuditAction.API_KEY_REVOKED and revoked.actor == STRIPE
        assert {c.field: (c.before, c.after) for c in revoked.changes}["prefix"] == (key.prefix, None)
        # A partner key acts on each account the partner manages: it is in each one's trail, and nowhere else.
        managed_entries = (await audit.audit_log(reader, SYSTEM, managed.id, first=10)).items
        assert [(e.action, e.changes) for e in managed_entries] == [
            (partner_created.action, partner_created.changes)
        ]
        assert (await audit.audit_log(reader, SYSTEM, elsewhere.id, first=10)).items == []
        stored = (await reader.exec(select(DomainEventRow))).all()
        for row in stored:
            text = json.dumps(row.payload)
            assert raw not in text and partner_raw not in text and "secret" not in text


async def test_keys_of_every_kind_made_and_revoked_on_the_command_line_are_recorded_as_its_operator(
    backend: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m cli create-api-key` / `revoke-api-key` (the commands' functions, each in a thread of its own as
    on the command line): every key is in the operator's trail, a member or partner key in its accounts' too,
    made by the OS user running the command; `cli audit-log` prints the operator's trail."""
    async with migrated_database(backend, "cli_keys") as url:
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("LOGNAME", "alice")  # what getpass.getuser() reads first
        engine = create_engine(url)
        try:
            async with unit_of_work(session_factory(engine)) as work:
                account = await create_account(work)
                partner = await create_partner(work, account)
            assert account.id is not None and partner.id is not None
            owners = {  # (account id, partner id) per kind
                PrincipalKind.MEMBER: (account.id, None),
                PrincipalKind.PARTNER: (None, partner.id),
                PrincipalKind.ADMIN: (None, None),
                PrincipalKind.USAGE_REPORTER: (None, None),
            }
            raw: dict[PrincipalKind, str] = {}
            for kind, (account_id, partner_id) in owners.items():
                capsys.readouterr()
                await asyncio.to_thread(cli.create_api_key, kind, f"{kind} key", account_id, partner_id)
                raw[kind] = capsys.readouterr().out.strip()
            for kind in (PrincipalKind.ADMIN, PrincipalKind.MEMBER):
                await asyncio.to_thread(cli.revoke_api_key, auth.key_prefix(raw[kind]) or "")
            capsys.readouterr()
            await asyncio.to_thread(cli.audit_log, account_id=audit.OPERATOR_TRAIL, first=100)
            printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
            async with session_factory(engine)() as reader:
                operators = (await audit.audit_log(reader, SYSTEM, audit.OPERATOR_TRAIL, first=100)).items
                accounts = (await audit.audit_log(reader, SYSTEM, account.id, first=100)).items
                stored = json.dumps(
                    [row.payload for row in (await reader.exec(select(DomainEventRow))).all()]
                )
        finally:
            await engine.dispose()

    def told(entries: list[audit.AuditEntry]) -> list[tuple[audit.AuditAction, str | None]]:
        """Each entry's action and the kind of key it is about."""
        return [(e.action, {c.field: c.before or c.after for c in e.changes}["kind"]) for e in entries]

    created, revoked = audit.AuditAction.API_KEY_CREATED, audit.AuditAction.API_KEY_REVOKED
    assert told(operators) == [
        (revoked, "member"),
        (revoked, "admin"),
        (created, "usage_reporter"),
        (created, "admin"),
        (created, "partner"),
        (created, "member"),
    ]
    assert told(accounts) == [(revoked, "member"), (created, "partner"), (created, "member")]
    alice = Actor(ActorKind.OPERATOR, "alice")
    assert all(entry.actor == alice and entry.request_id is None for entry in operators + accounts)
    assert [(line["action"], line["actor"]) for line in printed] == [
        (entry.action.value, {"kind": "operator", "name": "alice", "key_prefix": None}) for entry in operators
    ]
    assert not any(key in stored or key.split("_", 2)[2] in stored for key in raw.values())


async def test_webhook_endpoints_are_recorded_and_their_secret_never_is(
    session: AsyncSession, session_factory: SessionFactory
) -> None:
    """Through the endpoint services (billing/outgoing_webhooks/service.py), with a URL taken as vetted."""
    account = await create_account(session)
    assert account.id is not None
    principal = auth.Principal(kind=PrincipalKind.MEMBER, api_key_id=0, account_id=account.id)
    vetted = webhooks_outgoing.VettedEndpoint
    low, topup = webhooks_outgoing.BALANCE_LOW, webhooks_outgoing.TOPUP_SUCCEEDED
    created = vetted("https://hooks.example.com/a", webhooks_outgoing.event_types_column([low]), "crm", None)
    changed = vetted(None, webhooks_outgoing.event_types_column([low, topup]), None, False)
    unchanged = vetted(None, None, "crm", None)
    owner = Actor(ActorKind.MEMBER, "ops", "0123456789ab")
    secrets: list[str] = []
    with acting_as(owner):
        async with unit_of_work(session_factory) as work:
            endpoint = await webhooks_outgoing.create_endpoint(
                work, principal, account.id, created, now=utcnow()
            )
            secrets.append(endpoint.secret)
        assert endpoint.id is not None
        for change in (changed, unchanged):
            async with unit_of_work(session_factory) as work:
                await webhooks_outgoing.update_endpoint(work, principal, endpoint.id, change, now=utcnow())
        async with unit_of_work(session_factory) as work:
            rotated = await webhooks_outgoing.rotate_secret(work, principal, endpoint.id, now=utcnow())
            secrets.append(rotated.secret)
        async with unit_of_work(session_factory) as work:
            await webhooks_outgoing.delete_endpoint(work, principal, endpoint.id)

    async with session_factory() as reader:
        entries = (await audit.audit_log(reader, SYSTEM, account.id, first=10)).items
        stored = [row.payload for row in (await reader.exec(select(DomainEventRow))).all()]
    deleted, rotation, update, creation = entries  # the update that changed nothing left no entry
    subject = audit.Subject("WebhookEndpoint", endpoint.id)
    assert all(entry.actor == owner and entry.subject == subject for entry in entries)
    assert [entry.action for entry in entries] == [
        audit.AuditAction.WEBHOOK_ENDPOINT_CHANGED,
        audit.AuditAction.WEBHOOK_SECRET_ROTATED,
        audit.AuditAction.WEBHOOK_ENDPOINT_CHANGED,
        audit.AuditAction.WEBHOOK_ENDPOINT_CHANGED,
    ]
    assert {c.field: (c.before, c.after) for c in creation.changes} == {
        "url": (None, "https://hooks.example.com/a"),
        "description": (None, "crm"),
        "event_types": (None, "balance.low"),
        "status": (None, "active"),
    }
    assert {c.field: (c.before, c.after) for c in update.changes} == {
        "event_types": ("balance.low", "balance.low, topup.succeeded"),
        "status": ("active", "disabled"),
    }
    assert rotation.changes == []
    assert {c.field: c.after for c in deleted.changes} == dict.fromkeys(events.WebhookEndpointChanged.FIELDS)
    text = json.dumps(stored) + repr(entries)
    assert len(set(secrets)) == 2 and not any(secret in text for secret in secrets)
    assert not any(secret.removeprefix("whsec_") in text for secret in secrets)


def test_an_event_that_is_no_settings_change_is_refused() -> None:
    """Not described as an entry with no changes: a new settings event must be given its description."""
    with pytest.raises(ValueError, match="not an audited event"):
        audit.describe(events.BalanceChanged(1, "USD", 0, 100))


def test_every_field_an_entry_shows_has_its_api_name_in_its_domains_table() -> None:
    """Each audited event with every field set: what the domain names each change is in the API's table for
    that action (schema/audit.py), and the table names nothing the domain never shows."""

    def every(fields: tuple[str, ...]) -> events.Snapshot:
        return dict.fromkeys(fields, "x")

    samples: list[events.DomainEvent] = [
        events.CompanyChanged(1, None, every(events.CompanyChanged.FIELDS)),
        events.AutoRechargeSettingsChanged(1, None, every(events.AutoRechargeSettingsChanged.FIELDS)),
        events.PaymentMethodAdded(1, 2, "visa", "4242", True),
        events.PaymentMethodRemoved(1, 2, "visa", "4242"),
        events.DefaultPaymentMethodChanged(1, 2, 3),
        events.LeadPlanChanged(1, 2, None, every(events.LeadPlanChanged.FIELDS)),
        events.ApiKeyCreated(1, 2, "ci", "0123456789ab", "member"),
        events.ApiKeyRevoked(1, 2, "ci", "0123456789ab", "member"),
        events.WebhookEndpointChanged(1, 2, None, every(events.WebhookEndpointChanged.FIELDS)),
        events.WebhookSecretRotated(1, 2),
    ]
    shown: dict[audit.AuditAction, set[str]] = {}
    for sample in samples:
        _, described = audit.describe(sample)
        shown.setdefault(audit.AuditAction(sample.type), set()).update(c.field for c in described)
    assert set(shown) == set(audit.AuditAction)  # a new action needs a sample here, and a table
    for action, fields in shown.items():
        table = FIELD_NAMES[action]
        assert fields <= set(table), (action, fields - set(table))
    # The payment method actions share one table between them.
    assert set().union(*shown.values()) == {name for table in FIELD_NAMES.values() for name in table}
