"""Where the gateway's CPU goes for one benchmark scenario, by package and by function (cProfile), run by hand:

    .venv/bin/python -m bench.profile_gateway "Billing page" 200
    .venv/bin/python -m bench.profile_gateway recordUsage 20    # batches of 1,000 events

The app from `server.create_app` serves the scenario's request the given number of times over ASGI, in this
process, on the benchmark's data (bench/data.py builds it when missing), after a few untimed requests. The
shares are of the profiled CPU time (the database's own work is not in it; waiting for it is not CPU). It also
prints the asyncio tasks created per request (counted by a task factory) and the SQL statements per request.
"""

import asyncio
import cProfile
import itertools
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.engine import Engine

from bench.config import URL
from bench.data import ensure_data
from bench.gateway_vs_baseline import deep_cursor, scenarios, usage_batch
from bench.operations import RECORD_USAGE
from bench.usage_bench import as_input
from billing.config import Settings
from server import create_app

WARM_UP = 5
RECORD_USAGE_NAME = "recordUsage"  # not a scenario of the benchmark's table: batches of 1,000 usage events


class Counts:
    """Tasks created and statements sent while `counting` is on."""

    def __init__(self) -> None:
        self.counting = False
        self.tasks = 0
        self.statements = 0

    def task_factory(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> "asyncio.Task[Any]":
        self.tasks += self.counting
        return asyncio.Task(coro, loop=loop, **kwargs)

    def statement(self, *args: object) -> None:
        self.statements += self.counting


def package_of(filename: str) -> str:
    """The installed package, or the project folder, a function was defined in."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/lib/python3" in filename or filename.startswith("<") or filename == "~":
        return "python (stdlib, builtins)"
    parts = filename.split("/")
    return parts[-2] if len(parts) > 1 else filename


async def serve(name: str, count: int, profiler: cProfile.Profile, counts: Counts) -> None:
    asyncio.get_running_loop().set_task_factory(counts.task_factory)
    data = await ensure_data(URL)
    if name == RECORD_USAGE_NAME:
        key, run, at = data.reporter_key, time.time_ns(), datetime.now(UTC) - timedelta(minutes=5)
        bodies: Iterator[dict[str, object]] = (
            {
                "query": RECORD_USAGE,
                "variables": {"events": [as_input(e) for e in usage_batch(data, f"profile-{run}-{n}", at)]},
            }
            for n in itertools.count()
        )
    else:
        (case,) = [
            case for case in scenarios(data, await deep_cursor(data.billing_account_id)) if case.name == name
        ]
        key, bodies = case.key, itertools.repeat(case.body)
    # Uncached (the response cache is on by default): a repeated request would be a hit after the first.
    app = create_app(Settings(database_url=URL, embedded_worker=False, response_cache_max_bytes=0))
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=120
        ) as client,
    ):
        for number in range(WARM_UP + count):
            if number == WARM_UP:
                counts.counting = True
                profiler.enable()
            response = await client.post("/graphql", json=next(bodies), headers=headers)
            assert response.status_code == 200 and "errors" not in response.json(), response.text
        profiler.disable()
        counts.counting = False


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "Billing page"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    profiler = cProfile.Profile()
    counts = Counts()
    event.listen(Engine, "before_cursor_execute", counts.statement)
    asyncio.run(serve(name, count, profiler, counts))
    stats = pstats.Stats(profiler)
    by_package: dict[str, float] = defaultdict(float)
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = stats.stats  # type: ignore[attr-defined]
    for (filename, _, _), (_, _, own, _, _) in entries.items():
        by_package[package_of(filename)] += own
    total = sum(by_package.values())
    print(f"{name}: {total / count * 1_000:.1f} ms of profiled CPU per request ({count} requests)")
    print(
        f"  {counts.tasks / count:.1f} asyncio tasks and {counts.statements / count:.1f} SQL statements per request"
    )
    for package, seconds in sorted(by_package.items(), key=lambda item: -item[1])[:15]:
        print(f"  {seconds / total:6.1%}  {package}")
    stats.sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
