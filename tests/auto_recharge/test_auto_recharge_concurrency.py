"""PostgreSQL: 200 debits from two processes cross the threshold at once -> one recharge, one charge; and
workers running side by side never take the same recharge (FOR UPDATE SKIP LOCKED plus a lease).

FakeGateway counts the charges (distinct idempotency keys); what is proved here is the database's side.
"""

import asyncio
import sys
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from billing.auto_recharge import engine as recharge_engine
from billing.db import SessionFactory, session_factory, unit_of_work
from billing.stripe_gateway import ChargeResult
from models import Account, Recharge, RechargeStatus
from models.types import utcnow
from tests.conftest import ROOT
from tests.support.factories import SYSTEM, create_account, create_payment_method
from tests.support.fake_gateway import FakeGateway
from tests.support.ledger_checks import checked_balance
from tests.support.usage_factories import enable_auto_recharge

PROCESSES = 2
DEBITS_PER_PROCESS = 100


@pytest.mark.postgres_only
async def test_200_concurrent_debits_from_two_processes_schedule_and_charge_once(
    committing_engine: AsyncEngine,
) -> None:
    factory = session_factory(committing_engine)
    async with unit_of_work(factory) as session:
        account = await create_account(session)
        account.stripe_customer_id = "cus_concurrency"
        card = await create_payment_method(session, account)
        # 200 debits of 0.45 take 0 to -90.00: the very first one is below the threshold of 50.00.
        await enable_auto_recharge(session, account, card, threshold_minor=5_000, amount_minor=10_000)
    url = committing_engine.url.render_as_string(hide_password=False)

    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.concurrent_debits",
            url,
            str(account.id),
            str(DEBITS_PER_PROCESS),
            f"p{index}",
            cwd=ROOT,
            stderr=asyncio.subprocess.PIPE,
        )
        for index in range(PROCESSES)
    ]
    for worker in workers:
        _, errors = await worker.communicate()
        assert worker.returncode == 0, errors.decode()

    gateway = FakeGateway()
    assert await recharge_engine.run_once(factory, gateway) == 1
    assert await recharge_engine.run_once(factory, gateway) == 0
    assert account.id is not None
    async with unit_of_work(factory) as session:
        found = (await session.exec(select(Recharge).where(Recharge.account_id == account.id))).all()
        assert [r.status for r in found] == [RechargeStatus.SUCCEEDED]
        assert await checked_balance(session, account) == 10_000 - PROCESSES * DEBITS_PER_PROCESS * 45
    assert gateway.charges == 1


class HeldGateway(FakeGateway):
    """The first charge waits until released, so another worker can look for work while one is mid-charge."""

    def __init__(self) -> None:
        super().__init__()
        self.charging = asyncio.Event()
        self.release = asyncio.Event()

    async def charge(self, **kwargs: Any) -> ChargeResult:
        if not self.charging.is_set():
            self.charging.set()
            await self.release.wait()
        return await super().charge(**kwargs)


async def due_recharges(factory: SessionFactory, count: int) -> list[Account]:
    accounts = []
    async with unit_of_work(factory) as session:
        for index in range(count):
            account = await create_account(session)
            account.stripe_customer_id = f"cus_workers_{index}"
            await enable_auto_recharge(session, account, await create_payment_method(session, account))
            accounts.append(account)
        # Every balance (0) is below its threshold (50.00): one recharge due per account.
        await recharge_engine.schedule_if_low(session, SYSTEM, accounts, now=utcnow())
    return accounts


@pytest.mark.postgres_only
async def test_workers_claiming_at_once_never_take_the_same_recharge(committing_engine: AsyncEngine) -> None:
    factory = session_factory(committing_engine)
    accounts = await due_recharges(factory, 12)
    gateway = FakeGateway()
    # Four workers claim in small batches at the same moment, each claim in its own transaction.
    claimed = await asyncio.gather(
        *(recharge_engine.run_once(factory, gateway, batch_size=2) for _ in range(4))
    )
    while (more := await recharge_engine.run_once(factory, gateway, batch_size=2)) > 0:
        claimed.append(more)

    assert sum(claimed) == 12
    assert sorted(gateway.calls) == sorted(set(gateway.calls)) and gateway.charges == 12
    async with unit_of_work(factory) as session:
        for account in accounts:
            assert await checked_balance(session, account) == 10_000


@pytest.mark.postgres_only
async def test_a_recharge_being_charged_is_not_taken_by_another_worker(
    committing_engine: AsyncEngine,
) -> None:
    factory = session_factory(committing_engine)
    await due_recharges(factory, 3)
    gateway = HeldGateway()
    first = asyncio.create_task(recharge_engine.run_once(factory, gateway))
    await gateway.charging.wait()

    assert await recharge_engine.run_once(factory, gateway) == 0  # all three are leased to the first worker
    gateway.release.set()
    assert await first == 3
    assert sorted(gateway.calls) == sorted(set(gateway.calls)) and gateway.charges == 3
