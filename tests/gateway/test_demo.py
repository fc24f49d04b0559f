"""`make run`'s demo data: realistic, consistent with the ledger and the rollups, and seeded only once."""

from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import demo
from billing.usage.summary import monthly_summaries
from models import Account, Transaction, UsageEvent
from tests.support.ledger_checks import checked_balance
from tests.support.usage_factories import ADMIN


async def count(session: AsyncSession, model: type[Account] | type[Transaction] | type[UsageEvent]) -> int:
    return int((await session.exec(select(func.count()).select_from(model))).one())


async def test_the_demo_is_seeded_once_and_adds_up(session: AsyncSession) -> None:
    first = await demo.seed(session)
    counted = [await count(session, model) for model in (Account, Transaction, UsageEvent)]
    second = await demo.seed(session)

    assert first.created and not second.created and second.account.id == first.account.id
    assert [await count(session, model) for model in (Account, Transaction, UsageEvent)] == counted
    assert first.account.id is not None
    assert await checked_balance(session, first.account) > 0
    summary = (await monthly_summaries(session, ADMIN, [first.account.id]))[first.account.id]
    assert summary.leads.leads > 0 and summary.calling.calls > 0 and summary.ai_agent.requests > 0
