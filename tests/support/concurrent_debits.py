"""Run by the concurrency test in a process of its own: many concurrent usage debits on one account.

python -m tests.support.concurrent_debits DATABASE_URL ACCOUNT_ID COUNT PREFIX
"""

import asyncio
import sys
from datetime import timedelta

from billing.db import create_engine, session_factory, unit_of_work
from billing.usage.service import record_usage
from models.types import utcnow
from tests.support.usage_factories import REPORTER, call_for


async def main(url: str, account_id: int, count: int, prefix: str) -> None:
    engine = create_engine(url, pool_size=20, max_overflow=0, pool_timeout=120)
    factory = session_factory(engine)
    at = utcnow() - timedelta(minutes=1)

    async def one(index: int) -> None:
        async with unit_of_work(factory) as session:
            await record_usage(session, REPORTER, [call_for(account_id, at, key=f"{prefix}-{index}")])

    await asyncio.gather(*(one(index) for index in range(count)))
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
