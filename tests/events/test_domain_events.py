"""Domain events: written by the change's own transaction, handed to listeners after its commit only, read by
cursor, and (PostgreSQL) announced by NOTIFY when the commit happens."""

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.funding import FundingState
from billing.auto_recharge.service import AutoRechargeInput, save_settings
from billing.company.service import CompanyInput, save_company
from billing.config import Settings
from billing.db import SessionFactory, read_session, session_factory, unit_of_work
from billing.events import service as events
from billing.events.repository import DomainEventRepository
from billing.events.service import (
    AutoRechargeSettingsChanged,
    BalanceChanged,
    CompanyChanged,
    DefaultPaymentMethodChanged,
    DomainEvent,
    FundingStateChanged,
    LeadPlanChanged,
    PaymentMethodAdded,
    PaymentMethodRemoved,
    StoredEvent,
    TransactionCreated,
    TransactionSettled,
)
from billing.keys.service import Principal
from billing.lead_plans.service import LeadPlanInput, create_lead_plan, pause_lead_plan
from billing.ledger import service as ledger
from billing.payment_methods import service as payment_methods
from billing.scope import Scope
from billing.stripe_gateway import Card, StripeGateway
from billing.usage.service import record_usage
from models import Account, PrincipalKind, TransactionKind, TransactionStatus
from tests.support.factories import (
    SYSTEM,
    create_account,
    create_company,
    create_payment_method,
    savepoint_sessions,
    sessions_of,
)
from tests.support.statements import recorded_statements
from tests.support.stripe_server import LocalStripe
from tests.support.usage_factories import ADMIN, REPORTER, ai_request, call, lead
from tests.support.usage_factories import create_lead_plan as lead_plan_row

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


class Refused(Exception):
    """Raised inside a unit of work to roll it back."""


FAIL_COMMIT = "test.fail_commit"  # session.info flag: the listener test's late COMMIT failure


async def events_since(
    session: AsyncSession, after_id: int, account_ids: Sequence[int], *, limit: int = 100
) -> list[StoredEvent]:
    """Committed events of these accounts with ids above `after_id`, as live subscriptions read them."""
    scope = Scope.system("the tests read every account's events")
    return await DomainEventRepository(session, scope).since(after_id, account_ids, limit=limit)


def ids(*accounts: Account) -> list[int]:
    return [account.id for account in accounts if account.id is not None]


async def recorded(session: AsyncSession, *accounts: Account) -> list[DomainEvent]:
    return [stored.event for stored in await events_since(session, 0, ids(*accounts), limit=1_000)]


async def top_up(
    session: AsyncSession, account: Account, amount_minor: int, key: str, status: TransactionStatus
) -> ledger.Posting:
    assert account.id is not None
    return await ledger.post(
        session,
        SYSTEM,
        account_id=account.id,
        kind=TransactionKind.TOP_UP,
        amount_minor=amount_minor,
        description="Top-up",
        idempotency_key=key,
        status=status,
    )


async def new_account(factory: SessionFactory) -> Account:
    async with unit_of_work(factory) as session:
        return await create_account(session)


async def test_a_top_up_records_its_events_in_its_own_transaction(session_factory: SessionFactory) -> None:
    account = await new_account(session_factory)
    assert account.id is not None
    async with unit_of_work(session_factory) as session:
        posting = await top_up(session, account, 2_000, "pay-1", TransactionStatus.PENDING)
        assert await recorded(session, account) == []  # written by the COMMIT, in this transaction
    entry = posting.transaction
    assert entry.id is not None
    created = TransactionCreated(
        account.id, entry.id, TransactionKind.TOP_UP, TransactionStatus.PENDING, 2_000, "USD"
    )
    async with read_session(session_factory) as session:
        assert await recorded(session, account) == [created]

    async with unit_of_work(session_factory) as session:
        await ledger.settle(session, SYSTEM, entry.id, TransactionStatus.SUCCEEDED)
    async with read_session(session_factory) as session:
        assert await recorded(session, account) == [
            created,
            TransactionSettled(
                account.id, entry.id, TransactionKind.TOP_UP, TransactionStatus.SUCCEEDED, 2_000, "USD", None
            ),
            BalanceChanged(account.id, "USD", 0, 2_000),
            # The default low-balance threshold is 10.00: from nothing to 20.00 is OK.
            FundingStateChanged(account.id, FundingState.DEPLETED, FundingState.OK, 2_000),
        ]


async def test_a_rolled_back_posting_records_nothing(session_factory: SessionFactory) -> None:
    account = await new_account(session_factory)
    with pytest.raises(Refused):
        async with unit_of_work(session_factory) as session:
            await top_up(session, account, 1_500, "rolled-back", TransactionStatus.SUCCEEDED)
            raise Refused
    async with read_session(session_factory) as session:
        assert await recorded(session, account) == []
        stored = await session.get(Account, account.id)
        assert stored is not None and stored.balance_minor == 0


async def test_postings_in_one_transaction_record_one_balance_event_from_first_to_last(
    session_factory: SessionFactory,
) -> None:
    account = await new_account(session_factory)
    assert account.id is not None
    async with unit_of_work(session_factory) as session:
        await top_up(session, account, 5_000, "in", TransactionStatus.SUCCEEDED)
    async with unit_of_work(session_factory) as session:
        await top_up(session, account, -4_500, "out-1", TransactionStatus.SUCCEEDED)
        await top_up(session, account, -600, "out-2", TransactionStatus.SUCCEEDED)
    async with read_session(session_factory) as session:
        moves = [e for e in await recorded(session, account) if not isinstance(e, TransactionCreated)]
    assert moves == [
        BalanceChanged(account.id, "USD", 0, 5_000),
        FundingStateChanged(account.id, FundingState.DEPLETED, FundingState.OK, 5_000),
        # 50.00 -> 5.00 (LOW) -> -1.00: one change, and the funding state from where it was to where it ends.
        BalanceChanged(account.id, "USD", 5_000, -100),
        FundingStateChanged(account.id, FundingState.OK, FundingState.DEPLETED, -100),
    ]


async def usage_over(session: AsyncSession, accounts: Sequence[Account]) -> None:
    batch = []
    for account in accounts:
        plan = await lead_plan_row(session, account)
        earlier = NOW - timedelta(hours=1)
        batch += [lead(account, plan, earlier), call(account, earlier), ai_request(account, earlier)]
    await record_usage(session, REPORTER, batch, now=NOW)


async def test_a_usage_batch_records_one_balance_event_per_account_in_a_flat_number_of_statements(
    session: AsyncSession, engine: AsyncEngine
) -> None:
    """Writing a transaction's events costs the same statements for one account as for twenty: read the
    thresholds, (PostgreSQL) take the commit-order lock and NOTIFY, one INSERT."""
    counts = []
    for size in (1, 20):
        accounts = [await create_account(session) for _ in range(size)]
        await usage_over(session, accounts)
        with recorded_statements(engine) as statements:
            await session.commit()
        counts.append(len([s for s in statements if not s.startswith(("SAVEPOINT", "RELEASE"))]))
        found = await recorded(session, *accounts)
        balances = [e for e in found if isinstance(e, BalanceChanged)]
        assert balances == [BalanceChanged(a.id, "USD", 0, a.balance_minor) for a in accounts]  # type: ignore[arg-type]
        assert all(a.balance_minor < 0 for a in accounts)  # DEPLETED before and after: no funding event
        assert len([e for e in found if isinstance(e, TransactionCreated)]) == 3 * size
        assert len(found) == 4 * size
    # ... and one upsert raising the data versions (billing/data_version/service.py), however many accounts.
    assert counts == [4, 4] if engine.dialect.name == "postgresql" else counts == [3, 3]


def member_of(account: Account) -> Principal:
    return Principal(kind=PrincipalKind.MEMBER, api_key_id=0, account_id=account.id)


async def test_auto_recharge_settings_record_before_and_after_and_the_funding_state_they_move(
    session: AsyncSession,
) -> None:
    account = await create_account(session)
    await create_company(session, account)
    await lead_plan_row(session, account)
    card = await create_payment_method(session, account)
    await top_up(session, account, 3_000, "funds", TransactionStatus.SUCCEEDED)
    await session.commit()
    assert account.id is not None

    async def save(threshold: str) -> None:
        request = AutoRechargeInput(
            enabled=True,
            threshold=Decimal(threshold),
            amount=Decimal("100.00"),
            monthly_limit=Decimal("500.00"),
        )
        assert account.id is not None
        await save_settings(session, member_of(account), account.id, request, limits=Settings(), now=NOW)
        await session.commit()

    await save("20.00")
    await save("50.00")  # 30.00 is below the new threshold: LOW without the balance moving
    await save("50.00")  # the same again: nothing changed
    first: events.Snapshot = {
        "enabled": True,
        "threshold_minor": 2_000,
        "amount_minor": 10_000,
        "monthly_limit_minor": 50_000,
        "payment_method_id": card.id,
    }
    found = await recorded(session, account)
    assert [e for e in found if not isinstance(e, (TransactionCreated, BalanceChanged))] == [
        FundingStateChanged(account.id, FundingState.DEPLETED, FundingState.OK, 3_000),
        AutoRechargeSettingsChanged(account.id, None, first),
        AutoRechargeSettingsChanged(account.id, first, {**first, "threshold_minor": 5_000}),
        FundingStateChanged(account.id, FundingState.OK, FundingState.LOW, 3_000),
    ]


async def test_lead_plan_changes_record_before_and_after(session: AsyncSession) -> None:
    account = await create_account(session, currency="EUR")
    assert account.id is not None
    plan = await create_lead_plan(
        session, ADMIN, account.id, LeadPlanInput("Solar leads", Decimal("500.00"), Decimal("25.00"))
    )
    assert plan.id is not None
    await pause_lead_plan(session, ADMIN, plan.id, now=NOW)
    await session.commit()
    active: events.Snapshot = {
        "name": "Solar leads",
        "status": "active",
        "monthly_budget_minor": 50_000,
        "price_per_lead_minor": 2_500,
        "currency": "EUR",
    }
    assert await recorded(session, account) == [
        LeadPlanChanged(account.id, plan.id, None, active),
        LeadPlanChanged(account.id, plan.id, active, {**active, "status": "paused"}),
    ]


async def test_cards_synced_from_stripe_record_added_removed_and_the_new_default(
    session: AsyncSession,
) -> None:
    """Through the webhook path (sync_attached / sync_detached), which needs no Stripe server."""
    account = await create_account(session)
    account.stripe_customer_id = "cus_events"
    assert account.id is not None

    def card(stripe_id: str, last4: str) -> Card:
        return Card(stripe_id, "cus_events", "visa", last4, 12, 2030)

    first = await payment_methods.sync_attached(session, SYSTEM, card("pm_events_1", "4242"))
    second = await payment_methods.sync_attached(session, SYSTEM, card("pm_events_2", "1881"))
    await payment_methods.sync_attached(
        session, SYSTEM, card("pm_events_2", "1881")
    )  # known already: no event
    await payment_methods.sync_detached(session, SYSTEM, "pm_events_1")
    await session.commit()
    assert first is not None and first.id is not None and second is not None and second.id is not None
    assert await recorded(session, account) == [
        PaymentMethodAdded(account.id, first.id, "visa", "4242", True),
        PaymentMethodAdded(account.id, second.id, "visa", "1881", False),
        PaymentMethodRemoved(account.id, first.id, "visa", "4242"),
        DefaultPaymentMethodChanged(account.id, first.id, second.id),
    ]


async def test_company_and_default_card_changes_record_events(
    session: AsyncSession, stripe_gateway: StripeGateway, localstripe: LocalStripe
) -> None:
    account = await create_account(session)
    assert account.id is not None
    await session.commit()  # visible to the services' own sessions
    profile = CompanyInput(
        legal_name="Acme GmbH",
        registration_number="HRB 1",
        phone="030 1234567",
        address_line1="Unter den Linden 1",
        city="Berlin",
        postal_code="10117",
        country="DE",
    )
    await save_company(sessions_of(session), SYSTEM, stripe_gateway, account.id, profile)
    moved = CompanyInput(**{**profile.__dict__, "city": "Potsdam", "postal_code": "14467"})
    await save_company(sessions_of(session), SYSTEM, stripe_gateway, account.id, moved)
    first = await payment_methods.attach(
        sessions_of(session), SYSTEM, stripe_gateway, account.id, await localstripe.card()
    )
    second = await payment_methods.attach(
        sessions_of(session), SYSTEM, stripe_gateway, account.id, await localstripe.card()
    )
    assert first.id is not None and second.id is not None
    await payment_methods.set_default(sessions_of(session), SYSTEM, stripe_gateway, account.id, second.id)
    await payment_methods.set_default(
        sessions_of(session), SYSTEM, stripe_gateway, account.id, second.id
    )  # no change

    saved: events.Snapshot = {
        "legal_name": "Acme GmbH",
        "registration_number": "HRB 1",
        "vat_id": None,
        "phone": "+49301234567",
        "address_line1": "Unter den Linden 1",
        "address_line2": None,
        "city": "Berlin",
        "postal_code": "10117",
        "region": None,
        "country": "DE",
    }
    assert await recorded(session, account) == [
        CompanyChanged(account.id, None, saved),
        CompanyChanged(account.id, saved, {**saved, "city": "Potsdam", "postal_code": "14467"}),
        PaymentMethodAdded(account.id, first.id, first.brand, first.last4, True),
        PaymentMethodAdded(account.id, second.id, second.brand, second.last4, False),
        DefaultPaymentMethodChanged(account.id, first.id, second.id),
    ]


async def test_listeners_hear_a_commit_after_it_and_never_a_rollback(session_factory: SessionFactory) -> None:
    account = await new_account(session_factory)
    heard: list[list[StoredEvent]] = []

    def listener(batch: Sequence[StoredEvent]) -> None:
        mine = [stored for stored in batch if stored.account_id == account.id]
        if mine:
            heard.append(mine)

    def broken(batch: Sequence[StoredEvent]) -> None:
        raise RuntimeError("a listener's fault must not undo or fail the commit")

    def fail_late(session: Session) -> None:
        """Runs after billing.events.service' own before_commit hook (registered first): a COMMIT that fails late."""
        if session.info.pop(FAIL_COMMIT, False):
            raise Refused

    stop_broken = events.subscribe(broken)
    stop = events.subscribe(listener)
    event.listen(Session, "before_commit", fail_late)
    try:
        async with unit_of_work(session_factory) as session:
            await top_up(session, account, 700, "heard", TransactionStatus.SUCCEEDED)
            assert heard == []  # not before the commit
        assert len(heard) == 1
        async with read_session(session_factory) as session:
            assert heard[0] == await events_since(session, 0, ids(account))
        assert [type(stored.event) for stored in heard[0]] == [
            TransactionCreated,
            BalanceChanged,
            FundingStateChanged,
        ]

        with pytest.raises(Refused):
            async with unit_of_work(session_factory) as session:
                await top_up(session, account, 900, "not-heard", TransactionStatus.SUCCEEDED)
                raise Refused
        with pytest.raises(Refused):  # the COMMIT itself fails, after the events were written
            async with unit_of_work(session_factory) as session:
                await top_up(session, account, 900, "commit-fails", TransactionStatus.SUCCEEDED)
                session.info[FAIL_COMMIT] = True
        assert len(heard) == 1
    finally:
        event.remove(Session, "before_commit", fail_late)
        stop()
        stop_broken()


async def test_events_since_pages_by_cursor_within_the_accounts_asked_for(session: AsyncSession) -> None:
    mine, theirs = await create_account(session), await create_account(session)
    for number in range(5):
        await top_up(session, mine, 100, f"mine-{number}", TransactionStatus.PENDING)
        if number < 2:
            await top_up(session, theirs, 100, f"theirs-{number}", TransactionStatus.PENDING)
        await session.commit()

    pages: list[list[StoredEvent]] = []
    cursor = 0
    while page := await events_since(session, cursor, ids(mine), limit=2):
        pages.append(page)
        cursor = page[-1].id
    assert [len(page) for page in pages] == [2, 2, 1]
    read = [stored for page in pages for stored in page]
    assert [stored.id for stored in read] == sorted({stored.id for stored in read})
    assert {stored.account_id for stored in read} == {mine.id}
    keys = [e.transaction_id for e in (stored.event for stored in read) if isinstance(e, TransactionCreated)]
    assert len(keys) == 5 and keys == sorted(keys)
    assert len(await events_since(session, 0, ids(mine, theirs))) == 7
    assert await events_since(session, 0, []) == []


@pytest.mark.postgres_only
async def test_notify_reaches_a_listener_when_the_transaction_commits_and_never_on_rollback(
    committing_engine: AsyncEngine,
) -> None:
    factory = session_factory(committing_engine)
    rolled_back, committed = await new_account(factory), await new_account(factory)
    url = committing_engine.url
    listener = await asyncpg.connect(host=url.host, port=url.port, user=url.username, database=url.database)
    notifications: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(events.CHANNEL, lambda *args: notifications.put_nowait(args[3]))
    try:
        async with committing_engine.connect() as connection:
            outer = await connection.begin()
            # The session's commit runs the hook (events written, pg_notify called) but only releases a
            # savepoint: the database transaction is still open, so nothing may be announced yet.
            async with unit_of_work(savepoint_sessions(connection)) as session:
                await top_up(session, rolled_back, 1_000, "announced?", TransactionStatus.SUCCEEDED)
            await listener.fetchval("SELECT 1")  # a round trip: a notification sent before it arrives first
            assert notifications.empty()
            await outer.rollback()

        async with unit_of_work(factory) as session:
            await top_up(session, committed, 1_000, "announced", TransactionStatus.SUCCEEDED)
        # Notifications arrive in commit order: the rolled-back transaction's would have come first.
        assert await asyncio.wait_for(notifications.get(), timeout=30) == str(committed.id)
        async with read_session(factory) as session:
            assert len(await recorded(session, committed)) == 3  # visible to whoever the notification woke
            assert await recorded(session, rolled_back) == []
    finally:
        await listener.close()
