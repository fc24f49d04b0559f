"""Trusted documents (registered operations sent by hash) and the response cache of registered queries, which a
write anywhere makes unreachable in the same transaction (billing/data_version/service.py)."""

import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import parse, print_ast
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, update
from sqlmodel.ext.asyncio.session import AsyncSession

import root.limits
import server
from billing.config import Environment, Settings
from billing.data_version.service import period
from billing.db import SessionFactory, create_engine, session_factory, unit_of_work
from billing.keys import service as auth
from billing.stripe_gateway import StripeGateway
from models import Account, Company, FxRate, PartnerAccount, Transaction, TransactionKind, TransactionStatus
from server_cache import ENTRY_OVERHEAD_BYTES, ResponseCache
from tests.support.factories import (
    create_account,
    create_company,
    create_partner,
    member_key,
    partner_key,
)
from tests.support.gateway import open_gateway
from tests.support.graphql_client import execute_ok, post_graphql
from tests.support.payments_helpers import THREE_D_SECURE_CARD, completed_3ds, ready_account, top_up
from tests.support.statements import recorded_statements
from tests.support.stripe_server import LocalStripe
from tests.support.webhook_helpers import app_client, deliver, event

ROOT = Path(__file__).resolve().parents[2]
BILLING_PAGE = (ROOT / "schema" / "billing_page.graphql").read_text(encoding="utf-8")
DASHBOARD = (ROOT / "trusted_documents" / "dashboard.graphql").read_text(encoding="utf-8")
HISTORY = (ROOT / "trusted_documents" / "history.graphql").read_text(encoding="utf-8")
BILLING_PAGE_ID = hashlib.sha256(BILLING_PAGE.encode()).hexdigest()
GRAPHQL_RESPONSE = "application/graphql-response+json"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        environment=Environment.TEST,
        stripe_secret_key="sk_test_unused",
        embedded_worker=False,
        response_cache_max_bytes=1_000_000,
    )


@contextmanager
def reads(engine: AsyncEngine) -> Iterator[list[str]]:
    """The statements of the block other than the key check, the data-version read and transaction control:
    empty when an answer came from the cache."""
    with recorded_statements(engine) as statements:
        found: list[str] = []
        yield found
    control = ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT")
    found.extend(s for s in statements if not s.startswith(control) and "api_key" not in s)
    found[:] = [s for s in found if "data_version" not in s]


async def billing_page(
    client: httpx.AsyncClient, engine: AsyncEngine, key: str
) -> tuple[dict[str, Any], bool]:
    """The Billing page's answer, and whether it came from the cache."""
    with reads(engine) as statements:
        answer = await execute_ok(client, key, {"documentId": f"sha256:{BILLING_PAGE_ID}"})
    return answer, not statements


# ------------------------------------------------------------------------------------ trusted documents


async def test_a_registered_document_runs_by_id_in_either_convention_over_post_and_get(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    account = await create_account(session, name="Nordlicht")
    key = await member_key(session, account)
    await session.commit()
    by_text = await execute_ok(client, key, {"query": BILLING_PAGE})
    assert by_text["data"]["account"]["name"] == "Nordlicht"
    apollo = {"persistedQuery": {"version": 1, "sha256Hash": BILLING_PAGE_ID}}
    assert await execute_ok(client, key, {"extensions": apollo}) == by_text
    assert await execute_ok(client, key, {"documentId": f"sha256:{BILLING_PAGE_ID}"}) == by_text
    assert await execute_ok(client, key, {"documentId": BILLING_PAGE_ID}) == by_text
    # Apollo's persisted-query link hashes the printed document.
    printed = hashlib.sha256(print_ast(parse(BILLING_PAGE)).encode()).hexdigest()
    assert await execute_ok(client, key, {"documentId": f"sha256:{printed}"}) == by_text
    for parameters in ({"documentId": f"sha256:{BILLING_PAGE_ID}"}, {"extensions": json.dumps(apollo)}):
        response = await client.get("/graphql", params=parameters, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200 and response.json() == by_text


async def test_an_unknown_id_is_persisted_query_not_found(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    key = await member_key(session, await create_account(session))
    await session.commit()
    unknown = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}}
    for body in (unknown, {"documentId": "sha256:" + "f" * 64}, {"documentId": "not-a-hash"}):
        response = await post_graphql(client, key, body)
        assert response.status_code == 200
        request_id = response.headers["X-Request-Id"]
        extensions = {"code": "PERSISTED_QUERY_NOT_FOUND", "requestId": request_id}
        assert response.json() == {
            "errors": [{"message": "PersistedQueryNotFound", "extensions": extensions}]
        }
        assert (
            await post_graphql(client, key, body, headers={"Accept": GRAPHQL_RESPONSE})
        ).status_code == 400


async def test_an_id_and_a_query_that_differ_or_a_bad_id_are_bad_requests(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    key = await member_key(session, await create_account(session))
    await session.commit()
    for body in (
        {"documentId": BILLING_PAGE_ID, "query": "{ account { name } }"},
        {"documentId": 42},
        {"extensions": {"persistedQuery": {"version": 2, "sha256Hash": BILLING_PAGE_ID}}},
        {"extensions": {"persistedQuery": "yes"}},
    ):
        response = await post_graphql(client, key, body)
        assert response.status_code == 400, body
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_trusted_documents_only_refuses_unregistered_documents_of_member_keys(
    session: AsyncSession, session_factory: Any
) -> None:
    account = await create_account(session, name="Only")
    member = await member_key(session, account)
    partner = await partner_key(session, await create_partner(session, account))
    await session.commit()
    settings = Settings(environment=Environment.TEST, embedded_worker=False, trusted_documents_only=True)
    async with open_gateway(settings, session_factory) as client:
        refused = await post_graphql(
            client, member, {"query": "{ account { name } }"}, headers={"Accept": GRAPHQL_RESPONSE}
        )
        assert refused.status_code == 400
        [error] = refused.json()["errors"]
        request_id = refused.headers["X-Request-Id"]
        assert error["extensions"] == {"code": "PERSISTED_QUERY_NOT_IN_LIST", "requestId": request_id}
        assert "data" not in refused.json()
        assert (await post_graphql(client, member, {"query": "{ account { name } }"})).status_code == 200
        # Registered documents run, by id or by their text; other keys may still send any document.
        assert (await execute_ok(client, member, {"documentId": BILLING_PAGE_ID}))["data"]["account"][
            "name"
        ] == "Only"
        assert (await execute_ok(client, member, {"query": BILLING_PAGE}))["data"]["account"][
            "name"
        ] == "Only"
        names = await execute_ok(
            client, partner, {"query": "{ accounts(first: 5) { edges { node { name } } } }"}
        )
        assert names["data"]["accounts"]["edges"] == [{"node": {"name": "Only"}}]


def test_every_document_of_the_manifest_is_registered_and_validated_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    view = server.BillingGraphQL(Settings(environment=Environment.TEST))
    assert len(view.trusted) == 4
    document = view.trusted.by_text(DASHBOARD)
    assert document is not None and document.is_query("Dashboard") and not document.is_query("Other")
    validations: list[object] = []

    def validate(*args: object) -> list[object]:
        validations.append(args)
        return []

    monkeypatch.setattr(root.limits, "validate_document", validate)
    checks = root.limits.document_checks(view.schema.extensions)
    rules = root.limits.validation_rules(view.schema.extensions)
    others = [
        f"query Other{index} {{ account {{ name }} }}" for index in range(root.limits.CACHED_DOCUMENTS + 1)
    ]
    for text in others:  # more than the cache of query texts holds
        checks.check(view.schema._schema, text, rules)
    assert len(validations) == len(others)
    for text in (BILLING_PAGE, DASHBOARD, HISTORY):
        assert not checks.check(view.schema._schema, text, rules).errors
    assert len(validations) == len(others)  # pinned at start: never parsed or validated again


# --------------------------------------------------------------------------------------- response cache


async def test_a_repeated_query_is_answered_from_the_cache_until_a_core_update_commits(
    session: AsyncSession, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    account = await create_account(session, name="Before")
    key = await member_key(session, account)
    await session.commit()
    first, cached = await billing_page(client, engine, key)
    assert not cached and first["data"]["account"]["name"] == "Before"
    again, cached = await billing_page(client, engine, key)
    assert cached and again == first
    await session.exec(update(Account).where(col(Account.id) == account.id).values(name="After"))
    await session.commit()
    after, cached = await billing_page(client, engine, key)
    assert not cached and after["data"]["account"]["name"] == "After"


async def test_an_orm_write_and_a_rolled_back_one(
    session: AsyncSession, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    account = await create_account(session)
    company = await create_company(session, account, legal_name="First GmbH")
    key = await member_key(session, account)
    account_id = account.id
    await session.commit()
    await billing_page(client, engine, key)
    company.legal_name = "Rolled Back GmbH"
    await session.flush()
    await session.rollback()
    answer, cached = await billing_page(client, engine, key)
    assert cached and answer["data"]["account"]["company"]["legalName"] == "First GmbH"
    stored = await session.get(Company, account_id)
    assert stored is not None
    stored.legal_name = "Second GmbH"
    await session.commit()
    answer, cached = await billing_page(client, engine, key)
    assert not cached and answer["data"]["account"]["company"]["legalName"] == "Second GmbH"


async def test_a_write_after_a_failed_flush_still_counts(
    session: AsyncSession, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    account = await create_account(session, name="Kept")
    await create_company(session, account)
    key = await member_key(session, account)
    account_id = account.id
    assert account_id is not None
    await session.commit()
    await billing_page(client, engine, key)
    session.add(Company(account_id=account_id, legal_name="Twice"))  # the account has its profile already
    with pytest.raises(IntegrityError):
        await session.flush()
    await session.rollback()
    await session.exec(update(Account).where(col(Account.id) == account_id).values(name="Renamed"))
    await session.commit()
    answer, cached = await billing_page(client, engine, key)
    assert not cached and answer["data"]["account"]["name"] == "Renamed"


async def test_a_settlement_by_id_as_the_worker_and_stripe_webhooks_write_it_invalidates(
    session: AsyncSession, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """An UPDATE that names an entry, not its account (how settlement writes): every cached answer goes."""
    account = await create_account(session)
    key = await member_key(session, account)
    entry = Transaction(
        account_id=account.id,  # type: ignore[arg-type]
        kind=TransactionKind.TOP_UP,
        status=TransactionStatus.PENDING,
        amount_minor=5_000,
        currency="USD",
        description="Top-up",
        idempotency_key="settled-by-id",
    )
    session.add(entry)
    await session.commit()
    before, _ = await billing_page(client, engine, key)
    assert (await billing_page(client, engine, key))[1]
    statement = (
        update(Transaction).where(col(Transaction.id) == entry.id).values(status=TransactionStatus.SUCCEEDED)
    )
    await session.exec(statement)
    await session.commit()
    after, cached = await billing_page(client, engine, key)
    assert not cached
    [row] = after["data"]["account"]["transactions"]["edges"]
    assert row["node"]["status"] == "SUCCEEDED" and before != after


async def test_another_caller_never_gets_a_cached_answer_and_a_revoked_key_none(
    session: AsyncSession, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    mine, theirs = await create_account(session, name="Mine"), await create_account(session, name="Theirs")
    my_key, their_key, my_other_key = (
        await member_key(session, mine),
        await member_key(session, theirs),
        await member_key(session, mine),
    )
    await session.commit()
    assert (await billing_page(client, engine, my_key))[0]["data"]["account"]["name"] == "Mine"
    answer, cached = await billing_page(client, engine, their_key)
    assert not cached and answer["data"]["account"]["name"] == "Theirs"
    assert not (await billing_page(client, engine, my_other_key))[1]  # another key: its own entry
    assert (await billing_page(client, engine, my_key))[1]
    prefix = auth.key_prefix(my_key)
    assert prefix is not None
    await auth.revoke_api_key(session, prefix)
    await session.commit()
    response = await post_graphql(client, my_key, {"documentId": BILLING_PAGE_ID})
    assert response.status_code == 401 and "data" not in response.json()


async def test_a_partner_answer_goes_when_a_grant_or_any_of_its_accounts_changes(
    session: AsyncSession, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    first, second, third = [await create_account(session, name=n) for n in ("A", "B", "C")]
    partner = await create_partner(session, first, second)
    key = await partner_key(session, partner)
    await session.commit()
    body = {"query": DASHBOARD, "variables": {"first": 10}}

    async def names() -> tuple[list[str], bool]:
        with reads(engine) as statements:
            answer = await execute_ok(client, key, body)
        return sorted(e["node"]["name"] for e in answer["data"]["accounts"]["edges"]), not statements

    assert await names() == (["A", "B"], False)
    assert await names() == (["A", "B"], True)
    await session.exec(update(Account).where(col(Account.id) == second.id).values(name="B2"))
    await session.commit()
    assert await names() == (["A", "B2"], False)
    session.add(PartnerAccount(partner_id=partner.id, account_id=third.id))  # type: ignore[arg-type]
    await session.commit()
    assert await names() == (["A", "B2", "C"], False)
    assert await names() == (["A", "B2", "C"], True)


async def test_an_fx_rate_change_and_the_month_rolling_over_change_the_key(
    session: AsyncSession, client: httpx.AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await member_key(session, await create_account(session, currency="EUR", country="DE"))
    await session.commit()
    monkeypatch.setattr(server, "utcnow", lambda: datetime(2026, 11, 15, 12, tzinfo=UTC))
    before, _ = await billing_page(client, engine, key)
    assert (await billing_page(client, engine, key))[1]
    session.add(FxRate(currency="USD", rate_date=date(2026, 11, 14), per_eur="1.0800"))
    await session.commit()
    answer, cached = await billing_page(client, engine, key)
    assert not cached and answer != before and answer["data"]["account"]["balance"]["fxRate"] is not None
    assert (await billing_page(client, engine, key))[1]
    monkeypatch.setattr(server, "utcnow", lambda: datetime(2026, 12, 15, 12, tzinfo=UTC))
    assert not (await billing_page(client, engine, key))[1]


def test_the_key_follows_every_time_zone_into_a_new_month() -> None:
    assert period(datetime(2026, 11, 15, 12, tzinfo=UTC)) == "2026-11"
    # Kiribati (UTC+14) starts December at 10:00 UTC on November 30; Baker Island (UTC-12) at noon on the 1st.
    assert period(datetime(2026, 11, 30, 9, 59, tzinfo=UTC)) == "2026-11"
    assert period(datetime(2026, 11, 30, 10, 7, tzinfo=UTC)) == "2026-11-30T10:00:00+00:00"
    assert period(datetime(2026, 11, 30, 10, 16, tzinfo=UTC)) == "2026-11-30T10:15:00+00:00"
    assert period(datetime(2026, 12, 1, 11, 59, tzinfo=UTC)) == "2026-12-01T11:45:00+00:00"
    assert period(datetime(2026, 12, 1, 12, 0, tzinfo=UTC)) == "2026-12"


async def test_answers_with_errors_are_never_cached(session: AsyncSession, client: httpx.AsyncClient) -> None:
    key = await member_key(session, await create_account(session))
    await session.commit()
    body = {"query": HISTORY, "variables": {"first": 5, "after": "not a cursor"}}
    first, second = [(await post_graphql(client, key, body)).json() for _ in range(2)]
    assert first["errors"] and second["errors"]
    # Each carries its own request's id: the second was executed again, not replayed.
    assert first["errors"][0]["extensions"]["requestId"] != second["errors"][0]["extensions"]["requestId"]


def test_only_queries_are_cacheable(tmp_path: Path) -> None:
    (tmp_path / "both.graphql").write_text(
        "query Read { account { name } }\nmutation Write { createSetupIntent { __typename } }\n"
    )
    (tmp_path / "manifest.json").write_text(json.dumps({"documents": ["both.graphql"]}))
    view = server.BillingGraphQL(
        Settings(environment=Environment.TEST, trusted_documents_manifest=tmp_path / "manifest.json")
    )
    [document] = {
        view.trusted.by_id(d) for d in [hashlib.sha256((tmp_path / "both.graphql").read_bytes()).hexdigest()]
    }
    assert document is not None
    assert document.is_query("Read") and not document.is_query("Write") and not document.is_query(None)


# ------------------------------------------------------------------- another process, real commits


@pytest.fixture
async def committed_app(
    committing_engine: AsyncEngine, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    async with open_gateway(settings, session_factory(committing_engine)) as client:
        yield client


async def test_a_commit_from_another_engine_invalidates(
    committing_engine: AsyncEngine, committed_app: httpx.AsyncClient
) -> None:
    """As another process would: its own engine and connection, a real COMMIT (PostgreSQL)."""
    async with unit_of_work(session_factory(committing_engine)) as session:
        account = await create_account(session, name="Here")
        key = await member_key(session, account)
    first, cached = await billing_page(committed_app, committing_engine, key)
    assert not cached and (await billing_page(committed_app, committing_engine, key))[1]
    other = create_engine(str(committing_engine.url.render_as_string(hide_password=False)))
    try:
        async with unit_of_work(session_factory(other)) as session:
            await session.exec(update(Account).where(col(Account.id) == account.id).values(name="There"))
    finally:
        await other.dispose()
    answer, cached = await billing_page(committed_app, committing_engine, key)
    assert not cached and answer["data"]["account"]["name"] == "There" and first != answer


def test_the_cache_is_bounded_by_bytes_and_evicts_the_least_recently_used() -> None:
    cache = ResponseCache(max_bytes=3 * (100 + ENTRY_OVERHEAD_BYTES))
    for key in ("a", "b", "c"):
        cache.put(key, b"x" * 100)
    assert cache.get("a") is not None  # now the most recently used
    cache.put("d", b"y" * 100)
    assert cache.get("b") is None and len(cache) == 3 and cache.size <= cache.max_bytes
    cache.put("huge", b"z" * cache.max_bytes)  # larger than the whole cache: not kept, nothing evicted
    assert cache.get("huge") is None and len(cache) == 3


async def test_a_top_up_settled_by_a_stripe_webhook_in_another_app_invalidates(
    session: AsyncSession,
    session_factory: SessionFactory,
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    localstripe_url: str,
) -> None:
    """The real path: a 3-D Secure top-up left pending, then credited by a signed payment_intent.succeeded
    delivered to another app instance (as to another gateway process)."""
    account, method = await ready_account(session, stripe_gateway, localstripe, number=THREE_D_SECURE_CARD)
    key = await member_key(session, account)
    await session.commit()
    pending = await top_up(session_factory, stripe_gateway, account, method, "30")
    before, _ = await billing_page(client, engine, key)
    assert (await billing_page(client, engine, key))[1]
    succeeded = await completed_3ds(localstripe, pending)
    async with app_client(session_factory, localstripe_url) as stripe_side:
        assert (await deliver(stripe_side, event("payment_intent.succeeded", succeeded))).status_code == 200
    after, cached = await billing_page(client, engine, key)
    assert not cached and after != before
    assert after["data"]["account"]["balance"]["available"]["amount"] == "30.00"
