"""The usage overview's one statement for rollups and active lead plans: an account may have either, both or none."""

from sqlmodel.ext.asyncio.session import AsyncSession

from billing.months import parse_month
from billing.usage.summary import monthly_summaries
from models import UsageRollup
from tests.support.factories import create_account
from tests.support.usage_factories import ADMIN, create_lead_plan

MONTH = parse_month("2026-03")


async def test_rollups_and_active_plans_of_each_account_whatever_the_other_has(session: AsyncSession) -> None:
    plans_only, rollup_only, both, other_month, neither = [await create_account(session) for _ in range(5)]
    for account, budget in ((plans_only, 30_000), (both, 50_000), (both, 7_000), (other_month, 9_000)):
        await create_lead_plan(session, account, monthly_budget_minor=budget)
    await create_lead_plan(session, plans_only, status="paused", monthly_budget_minor=1_000_000)
    for account, month, spent in (
        (rollup_only, "2026-03", 4_000),
        (both, "2026-03", 20_000),
        (other_month, "2026-02", 5),
    ):
        assert account.id is not None
        session.add(UsageRollup(account_id=account.id, month=month, lead_spent_minor=spent, leads=3, calls=2))
    await session.flush()
    accounts = [plans_only, rollup_only, both, other_month, neither]
    ids = [account.id for account in accounts if account.id is not None]

    summaries = await monthly_summaries(session, ADMIN, ids, MONTH)

    assert [
        (
            summaries[i].leads.active_subscriptions,
            summaries[i].leads.remaining_budget_minor,
            summaries[i].leads.spent_minor,
            summaries[i].calling.calls,
        )
        for i in ids
    ] == [(1, 30_000, 0, 0), (0, 0, 4_000, 2), (2, 37_000, 20_000, 2), (1, 9_000, 0, 0), (0, 0, 0, 0)]
