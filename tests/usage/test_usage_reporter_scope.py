"""A usage reporter's scope: its batches lock, check and debit every account they name (the write rule), yet
every read through a repository finds nothing of any account (the read rule); see billing/scope.py."""

from datetime import UTC, datetime, timedelta

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.repository import AccountRepository
from billing.auto_recharge.repository import AutoRechargeRepository
from billing.keys.service import Principal
from billing.lead_plans.repository import LeadPlanRepository
from billing.ledger import history
from billing.ledger import service as ledger
from billing.scope import Scope
from billing.usage.service import record_usage
from billing.usage.summary_repository import UsageSummaryRepository
from models import Account, PrincipalKind, Recharge, RechargeStatus
from tests.support.factories import create_account, create_payment_method
from tests.support.usage_factories import (
    ADMIN,
    REPORTER,
    call,
    create_lead_plan,
    enable_auto_recharge,
    lead,
)

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=2)
MONTH = "2026-03"


async def reads(session: AsyncSession, scope: Scope, account: Account) -> dict[str, object]:
    """What `scope` reads of the account through the repositories: its row, balance, history, lead plans,
    usage rollups, auto-recharge settings and recharges."""
    assert account.id is not None
    ids = [account.id]
    recharges = AutoRechargeRepository(session, scope)
    page = await history.history(session, scope, account.id, first=10)
    return {
        "account": list(await AccountRepository(session, scope).by_ids(ids)),
        "balance": await AccountRepository(session, scope).balances(ids),
        "history": sorted(entry.amount_minor for entry in page.items),
        "succeeded": await ledger.succeeded_sum(session, scope, account.id),
        "lead plans": [plan.id for plan in await LeadPlanRepository(session, scope).of_accounts(ids)],
        "rollups": [
            r.calls for r in await UsageSummaryRepository(session, scope).totals(ids, [MONTH]) if r.month
        ],
        "settings": list(await recharges.settings_of(ids)),
        "recharges": [r.amount_minor for r in await recharges.finished_since(ids, NOW - timedelta(days=32))],
    }


async def test_a_usage_reporter_records_for_an_account_it_cannot_read(session: AsyncSession) -> None:
    account = await create_account(session)
    plan = await create_lead_plan(session, account)
    await enable_auto_recharge(session, account, await create_payment_method(session, account))
    assert account.id is not None
    session.add(
        Recharge(
            account_id=account.id,
            status=RechargeStatus.SUCCEEDED,
            amount_minor=10_000,
            currency=account.currency,
            finished_at=EARLIER,
        )
    )
    recorded = await record_usage(
        session, REPORTER, [call(account, EARLIER), lead(account, plan, EARLIER)], now=NOW
    )

    assert (recorded.recorded, account.balance_minor) == (2, -2_545)
    assert await reads(session, Scope.of(ADMIN), account) == {
        "account": [account.id],
        "balance": {account.id: -2_545},
        "history": [-2_500, -45],
        "succeeded": -2_545,
        "lead plans": [plan.id],
        "rollups": [1],
        "settings": [account.id],
        "recharges": [10_000],
    }
    assert await reads(session, Scope.of(REPORTER), account) == {
        "account": [],
        "balance": {},
        "history": [],
        "succeeded": 0,
        "lead plans": [],
        "rollups": [],
        "settings": [],
        "recharges": [],
    }


async def test_scheduling_after_a_reporters_debit_counts_the_recharges_of_the_month(
    session: AsyncSession,
) -> None:
    """The write path reads what the write needs: here the month's recharges, which hold back a recharge past
    the monthly limit (read with the reporter's read rule they would be none, and one would be scheduled)."""
    at_limit, below_limit = await create_account(session), await create_account(session)
    for account in (at_limit, below_limit):
        card = await create_payment_method(session, account)
        await enable_auto_recharge(session, account, card, amount_minor=10_000, monthly_limit_minor=10_000)
    assert at_limit.id is not None and below_limit.id is not None
    session.add(
        Recharge(
            account_id=at_limit.id,
            status=RechargeStatus.SUCCEEDED,
            amount_minor=10_000,
            currency=at_limit.currency,
            finished_at=EARLIER,
        )
    )
    await record_usage(session, REPORTER, [call(at_limit, EARLIER), call(below_limit, EARLIER)], now=NOW)

    scheduled = (
        await session.exec(select(Recharge.account_id).where(Recharge.status == RechargeStatus.SCHEDULED))
    ).all()
    assert scheduled == [below_limit.id]


async def test_a_member_writes_only_the_accounts_it_reads(session: AsyncSession) -> None:
    mine, theirs = await create_account(session), await create_account(session)
    assert mine.id is not None and theirs.id is not None
    member = Scope.of(Principal(kind=PrincipalKind.MEMBER, api_key_id=0, account_id=mine.id))
    reporter = Scope.of(REPORTER)

    assert list(await ledger.lock_accounts(session, member, [mine.id, theirs.id])) == [mine.id]
    assert list(await ledger.lock_accounts(session, reporter, [mine.id, theirs.id])) == [mine.id, theirs.id]
