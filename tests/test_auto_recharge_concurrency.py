"""PostgreSQL: 200 debits from two processes cross the threshold at once -> one recharge, one charge.

FakeGateway counts the charges (distinct idempotency keys); what is proved here is the database's side.
"""

import asyncio
import sys

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from billing import recharge_engine
from billing.db import session_factory, unit_of_work
from models import Recharge, RechargeStatus
from tests.conftest import ROOT
from tests.factories import create_account, create_payment_method
from tests.fake_gateway import FakeGateway
from tests.ledger_checks import checked_balance
from tests.usage_factories import enable_auto_recharge

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
            "tests.concurrent_debits",
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
