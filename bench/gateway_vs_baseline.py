"""The gateway against a raw baseline on PostgreSQL, side by side, run by hand (issue 10):

    .venv/bin/python -m bench.gateway_vs_baseline      # BENCH_DATABASE_URL, BENCH_SECONDS (default 10)

1. Builds the data of bench/data.py in the database (created and migrated if missing), or reuses it.
2. Starts the gateway (uvicorn, one process, EMBEDDED_WORKER=false), the gateway again with the response cache
   on (RESPONSE_CACHE_MAX_BYTES), and the baseline (bench/baseline.py, the same operations by hand on
   Starlette + asyncpg), each pinned to CPU 0 with `taskset -c 0`.
3. Sends each scenario's request to both and stops unless the `data` of the answers are byte-for-byte equal as
   JSON (keys in order, money strings included). The gateway's answer also carries `extensions.cost`, which the
   baseline does not compute; it is left out of the comparison.
4. Drives each scenario with wrk from CPU 1 (this process runs there too), one server at a time, in three
   rounds in which the servers take turns: BENCH_SECONDS over the rounds at 1 connection (latency percentiles)
   and at 16 connections (throughput); each figure is the median of its rounds. Then the 1.5x pairs (deep
   history pages, the 1M-event usage overview) in alternating short runs at 1 connection.
5. Reads the gateway's RSS after the dashboard load, and times recordUsage batches of 1,000 events through the
   gateway's GraphQL endpoint (over one keep-alive connection, bench/http_client.py) against calling
   `record_usage` directly from this process (on CPU 1), the two ways' batches alternating.

SQL statements per request are counted in this process, outside the timed runs: the app from
`server.create_app`, one request of each scenario over ASGI, with a listener on SQLAlchemy's
`before_cursor_execute` (every statement SQLAlchemy sends, authentication included; an executemany counts once)
and on `begin` (transactions). Nothing is added to the gateway processes being timed.

About nine minutes on two cores once the data exists (building it takes a few minutes more).
"""

import asyncio
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event
from sqlalchemy.engine import Engine

from bench.config import URL, asyncpg_dsn
from bench.data import BenchData, ensure_data
from bench.http_client import KeepAliveConnection
from bench.load import LoadResult, require_wrk, run_wrk
from bench.operations import BILLING_PAGE, DASHBOARD, HISTORY, USAGE_OVERVIEW
from bench.usage_bench import Way, check_recorded, events_per_second, graphql_headers, record_usage_body
from billing.config import Settings
from billing.db import create_engine, session_factory, unit_of_work
from billing.keys.service import Principal
from billing.pagination import encode_cursor
from billing.usage.service import UsageEvent, record_usage
from models import PrincipalKind
from server import create_app

ROOT = Path(__file__).resolve().parent.parent
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
WARM_UP_SECONDS = 2
ROUNDS = 3  # runs of each server per scenario, taking turns; BENCH_SECONDS is shared among them
MAX_SECONDS = 60  # a throughput run of a slow scenario lasts longer than BENCH_SECONDS, up to this
DEEP = 999_000  # entries above the deep history page
GATEWAY, CACHED = "gateway", "gateway, response cache"
CACHE_BYTES = 64 * 1024 * 1024  # RESPONSE_CACHE_MAX_BYTES of the cached gateway
HISTORY_FILTER = {"kinds": ["TOP_UP"], "statuses": ["SUCCEEDED"], "since": "2020-01-01T00:00:00+00:00"}


@dataclass(frozen=True)
class Scenario:
    name: str
    query: str
    variables: dict[str, object]
    key: str

    @property
    def body(self) -> dict[str, object]:
        return {"query": self.query, "variables": self.variables}


@dataclass
class Measured:
    throughput: dict[str, LoadResult] = field(default_factory=dict)  # by server, at 16 connections
    latency: dict[str, LoadResult] = field(default_factory=dict)  # by server, at 1 connection
    # Per gateway (uncached, cached): its statements and transactions per request.
    statements: dict[str, tuple[int, int]] = field(default_factory=dict)


async def deep_cursor(account_id: int) -> str:
    """The cursor of the entry DEEP places below the newest: the page after it starts DEEP entries down."""
    connection = await asyncpg.connect(asyncpg_dsn(URL))
    try:
        row = await connection.fetchrow(
            "SELECT created_at, id FROM ledger_transaction WHERE account_id = $1"
            " ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1",
            account_id,
            DEEP - 1,
        )
    finally:
        await connection.close()
    assert row is not None, "the Billing page's account has fewer entries than the deep page needs"
    return encode_cursor("transaction", row["created_at"].isoformat(), str(row["id"]))


def scenarios(data: BenchData, deep: str) -> list[Scenario]:
    member, small, partner = data.member_key, data.small_member_key, data.partner_key
    return [
        Scenario("Billing page", BILLING_PAGE, {}, member),
        Scenario("dashboard, accounts(first: 100)", DASHBOARD, {"first": 100}, partner),
        Scenario("history, page 1", HISTORY, {"first": 50}, member),
        Scenario("history, 999,000 deep", HISTORY, {"first": 50, "after": deep}, member),
        Scenario("history filtered, page 1", HISTORY, {"first": 50, "filter": HISTORY_FILTER}, member),
        Scenario(
            "history filtered, 999,000 deep",
            HISTORY,
            {"first": 50, "after": deep, "filter": HISTORY_FILTER},
            member,
        ),
        Scenario("usage overview, 10k events", USAGE_OVERVIEW, {}, small),
        Scenario("usage overview, 1M events", USAGE_OVERVIEW, {}, member),
    ]


# --- statements per request (in this process, untimed) -----------------------------------------------------


@contextmanager
def counted() -> Iterator[list[int]]:
    """[statements, transactions] sent by any SQLAlchemy engine while the block runs."""
    counts = [0, 0]

    def statement(*args: object) -> None:
        counts[0] += 1

    def begin(*args: object) -> None:
        counts[1] += 1

    event.listen(Engine, "before_cursor_execute", statement)
    event.listen(Engine, "begin", begin)
    try:
        yield counts
    finally:
        event.remove(Engine, "before_cursor_execute", statement)
        event.remove(Engine, "begin", begin)


async def count_statements(
    cases: list[Scenario], partner_key: str, *, cache_bytes: int = 0
) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
    """Per scenario (statements, transactions) of one request, after a warm-up request (with the response
    cache on, the second is answered from it); and the dashboard's statements for 10 accounts, 100, and each
    page of 100 through all 1,000."""
    settings = Settings(database_url=URL, embedded_worker=False, response_cache_max_bytes=cache_bytes)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    per_scenario: dict[str, tuple[int, int]] = {}
    dashboard: dict[str, int] = {}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as client,
    ):

        async def post(key: str, body: dict[str, object]) -> tuple[dict[str, Any], tuple[int, int]]:
            with counted() as counts:
                response = await client.post(
                    "/graphql", json=body, headers={"Authorization": f"Bearer {key}"}
                )
            answer: dict[str, Any] = response.json()
            assert response.status_code == 200 and "errors" not in answer, answer
            return answer, (counts[0], counts[1])

        for case in cases:
            await post(case.key, case.body)
            per_scenario[case.name] = (await post(case.key, case.body))[1]
        if any(case.query == DASHBOARD for case in cases):
            dashboard["first: 10"] = (
                await post(partner_key, {"query": DASHBOARD, "variables": {"first": 10}})
            )[1][0]
            after = None
            for page in range(1, 11):
                variables = {"first": 100, "after": after}
                answer, (statements, _) = await post(
                    partner_key, {"query": DASHBOARD, "variables": variables}
                )
                dashboard[f"page {page} of 100"] = statements
                after = answer["data"]["accounts"]["pageInfo"]["endCursor"]
    return per_scenario, dashboard


# --- the servers ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str

    @property
    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for {self.name}")

    def cpu_ticks(self) -> int:
        """User and system CPU time used so far, in clock ticks (/proc/PID/stat fields 14 and 15)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def settle(self) -> None:
        """Wait until the server is idle: when wrk stops, the requests it abandoned keep running (execution is
        not cancelled by a disconnect) and would be measured as part of the next run. Polled: a process's CPU
        time has no event to wait for."""
        before = self.cpu_ticks()
        for _ in range(1_200):
            time.sleep(0.25)
            now = self.cpu_ticks()
            if now == before:
                return
            before = now
        raise RuntimeError(f"{self.name} stayed busy for 5 minutes after its load stopped")


def start(name: str, app: str, *, factory: bool, environment: dict[str, str]) -> Server:
    """uvicorn on CPU 0, one process, no access log (for both)."""
    port = free_port()
    command = ["taskset", "-c", "0", sys.executable, "-m", "uvicorn", app, "--port", str(port)]
    command += ["--no-access-log", "--log-level", "warning"] + (["--factory"] if factory else [])
    process = subprocess.Popen(command, cwd=ROOT, env=os.environ | environment)
    return Server(name, process, f"http://127.0.0.1:{port}")


async def wait_ready(server: Server) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            if server.process.poll() is not None:
                raise SystemExit(f"{server.name} exited with {server.process.returncode}")
            try:
                if (await client.get(f"{server.url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)  # polling a starting process: there is no event to wait for
    raise SystemExit(f"{server.name} did not answer /healthz")


async def same_answers(servers: list[Server], cases: list[Scenario]) -> None:
    """Each scenario's `data`, encoded the same way, byte for byte; stops the benchmark on a difference."""
    async with httpx.AsyncClient(timeout=120) as client:
        for case in cases:
            encoded = []
            for server in servers:
                response = await client.post(
                    f"{server.url}/graphql", json=case.body, headers={"Authorization": f"Bearer {case.key}"}
                )
                answer = response.json()
                if response.status_code != 200 or "errors" in answer:
                    raise SystemExit(f"{case.name}: {server.name} answered {response.status_code}: {answer}")
                encoded.append(as_json(answer["data"]))
            for server, other in zip(servers[1:], encoded[1:], strict=True):
                if other != encoded[0]:
                    at = next(i for i, (a, b) in enumerate(zip(encoded[0], other, strict=False)) if a != b)
                    raise SystemExit(
                        f"{case.name}: the answers of {servers[0].name} and {server.name} differ at byte {at}:\n"
                        f"  ...{encoded[0][max(0, at - 80) : at + 80]}...\n  ...{other[max(0, at - 80) : at + 80]}..."
                    )
            print(f"  same answer: {case.name} ({len(encoded[0]):,} bytes of data)", flush=True)


def as_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --- recording usage ------------------------------------------------------------------------------------------


def usage_batch(data: BenchData, prefix: str, at: datetime) -> list[UsageEvent]:
    """1,000 events on the recording account, a third of each category."""
    events = []
    for index in range(1_000):
        category = ("lead", "call", "ai_agent")[index % 3]
        events.append(
            UsageEvent(
                external_id=f"{prefix}-{index}",
                account_id=data.recording_account_id,
                occurred_at=at,
                category=category,
                cost={"lead": Decimal("25.00"), "call": Decimal("0.45"), "ai_agent": Decimal("0.03")}[
                    category
                ],
                lead_plan_id=data.recording_plan_id if category == "lead" else None,
                duration_seconds=90 if category == "call" else None,
                input_tokens=900 if category == "ai_agent" else None,
                output_tokens=300 if category == "ai_agent" else None,
            )
        )
    return events


async def bench_recording(data: BenchData, gateway: Server) -> tuple[float, float]:
    """Events/s through the gateway's recordUsage, and calling record_usage directly (each batch committed),
    batches of the two alternating."""
    run = f"run-{time.time_ns()}"
    at = datetime.now(UTC) - timedelta(minutes=5)
    reporter = Principal(kind=PrincipalKind.USAGE_REPORTER, api_key_id=0)
    engine = create_engine(URL)
    factory = session_factory(engine)
    headers = graphql_headers(data.reporter_key)
    async with KeepAliveConnection(gateway.url) as connection:

        def events(prefix: str) -> list[UsageEvent]:
            return usage_batch(data, prefix, at)

        async def through_graphql(body: bytes) -> None:
            status, answer = await connection.post("/graphql", body, headers)
            assert status == 200, answer
            check_recorded(answer)

        async def direct(events: list[UsageEvent]) -> None:
            async with unit_of_work(factory) as session:
                await record_usage(session, reporter, events)

        rates = await events_per_second(
            {
                "graphql": Way(lambda prefix: record_usage_body(events(prefix)), through_graphql),
                "direct": Way(events, direct),
            },
            run,
        )
    await engine.dispose()
    return rates["graphql"], rates["direct"]


# --- the run --------------------------------------------------------------------------------------------------


def measure(servers: list[Server], case: Scenario, measured: Measured) -> None:
    """A warm-up of each server, then ROUNDS rounds in which the servers take turns (the order rotating), each
    idle before each run: a latency run (1 connection), then a throughput run (16 connections, long enough for
    every connection to see at least three answers). Each figure is the median of its rounds: one server's runs
    spread over the scenario's whole time, so a slow minute of the machine (the database's processes share its
    two cores) falls on all of them, where back-to-back runs gave the Billing page's ratio 0.18 and 0.31 on the
    same tree."""

    def load(server: Server, connections: int, seconds: int) -> LoadResult:
        server.settle()
        return run_wrk(f"{server.url}/graphql", case.key, case.body, connections=connections, seconds=seconds)

    for server in servers:
        load(server, 1, WARM_UP_SECONDS)
    latencies: dict[str, list[LoadResult]] = {server.name: [] for server in servers}
    throughputs: dict[str, list[LoadResult]] = {server.name: [] for server in servers}
    seconds = math.ceil(SECONDS / ROUNDS)
    for number in range(ROUNDS):
        for server in servers[number % len(servers) :] + servers[: number % len(servers)]:
            latency = load(server, 1, seconds)
            latencies[server.name].append(latency)
            at_16 = min(MAX_SECONDS, max(seconds, math.ceil(3 * 16 * latency.p50_ms / 1_000)))
            throughputs[server.name].append(load(server, 16, at_16))
    for server in servers:
        measured.latency[server.name] = median_of(latencies[server.name])
        measured.throughput[server.name] = median_of(throughputs[server.name])
        server.settle()


def median_of(runs: list[LoadResult]) -> LoadResult:
    """Each figure's median over the runs; the failures of all of them."""
    return LoadResult(
        rps=statistics.median(run.rps for run in runs),
        p50_ms=statistics.median(run.p50_ms for run in runs),
        p99_ms=statistics.median(run.p99_ms for run in runs),
        failed=sum(run.failed for run in runs),
    )


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}" if denominator else "-"


def table(results: dict[str, Measured]) -> list[str]:
    """A row per scenario and gateway: uncached, then with the response cache (the same requests repeated, so
    after the first each is a hit: the key check and one data-version read)."""
    lines = [
        "| scenario | gateway rps | gateway p50 / p99 | baseline rps | baseline p50 / p99 | ratio (rps)"
        " | SQL statements (transactions) per request |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, measured in results.items():
        for gateway, label in ((GATEWAY, name), (CACHED, f"{name}, response cache")):
            row = [label]
            for server in (gateway, "baseline"):
                throughput, latency = measured.throughput[server], measured.latency[server]
                failed = throughput.failed + latency.failed
                row.append(f"{throughput.rps:,.1f}" + (f" ({failed} failed)" if failed else ""))
                row.append(f"{latency.p50_ms:.1f} / {latency.p99_ms:.1f} ms")
            row.append(ratio(measured.throughput[gateway].rps, measured.throughput["baseline"].rps))
            statements, transactions = measured.statements[gateway]
            row.append(f"{statements} ({transactions})")
            lines.append("| " + " | ".join(row) + " |")
    return lines


# (the larger case, the smaller one): the issue wants the first within 1.5x of the second
PAIRS = [
    ("history, 999,000 deep", "history, page 1"),
    ("history filtered, 999,000 deep", "history filtered, page 1"),
    ("usage overview, 1M events", "usage overview, 10k events"),
]


PAIR_ROUNDS, PAIR_SECONDS = 5, 3


def pair_latencies(server: Server, cases: dict[str, Scenario]) -> dict[str, float]:
    """p50 at 1 connection of each case of the PAIRS, the median of PAIR_ROUNDS short runs in which a pair's two
    cases take turns (smaller, larger, larger, smaller, ...). At a few milliseconds, one 10 s run's p50 moved by a
    third from one run to the next on this machine (where the database process lands beside the server or
    wrk); measured apart in time, the two cases of a pair compared that noise more than their difference."""
    runs: dict[str, list[float]] = {}
    for larger, smaller in PAIRS:
        if larger in cases and smaller in cases:
            for number in range(PAIR_ROUNDS):
                for name in (smaller, larger) if number % 2 == 0 else (larger, smaller):
                    server.settle()
                    case = cases[name]
                    load = run_wrk(
                        f"{server.url}/graphql", case.key, case.body, connections=1, seconds=PAIR_SECONDS
                    )
                    runs.setdefault(name, []).append(load.p50_ms)
    return {name: statistics.median(p50s) for name, p50s in runs.items()}


def pair_lines(latencies: dict[str, dict[str, float]]) -> list[str]:
    """`latencies`: by server, by case (pair_latencies)."""
    lines = []
    for larger, smaller in PAIRS:
        if all(larger in by_case and smaller in by_case for by_case in latencies.values()):
            figures = [
                f"{server} {ratio(by_case[larger], by_case[smaller])}x ({by_case[larger]:.1f} / {by_case[smaller]:.1f} ms)"
                for server, by_case in latencies.items()
            ]
            lines.append(
                f"- {larger} / {smaller}, p50 at 1 connection (median of {PAIR_ROUNDS} alternating runs of"
                f" {PAIR_SECONDS} s): {', '.join(figures)}"
            )
    return lines


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


async def main() -> None:
    """BENCH_ONLY (comma-separated parts of scenario names) runs just those, without recording usage."""
    require_wrk()
    os.sched_setaffinity(0, {1})  # with wrk; the servers get CPU 0
    only = [part.strip() for part in os.environ.get("BENCH_ONLY", "").split(",") if part.strip()]
    data = await ensure_data(URL)
    cases = [
        case
        for case in scenarios(data, await deep_cursor(data.billing_account_id))
        if not only or any(part in case.name for part in only)
    ]
    print("counting the gateway's SQL statements per request ...", flush=True)
    statements, dashboard_statements = await count_statements(cases, data.partner_key)
    cached_statements, _ = await count_statements(cases, data.partner_key, cache_bytes=CACHE_BYTES)

    environment = {"BENCH_DATABASE_URL": URL, "DATABASE_URL": URL, "EMBEDDED_WORKER": "false"}
    cached = environment | {"RESPONSE_CACHE_MAX_BYTES": str(CACHE_BYTES)}
    environment |= {"RESPONSE_CACHE_MAX_BYTES": "0"}  # the uncached gateway (the cache is on by default)
    servers = [
        start(GATEWAY, "server:create_app", factory=True, environment=environment),
        start(CACHED, "server:create_app", factory=True, environment=cached),
        start("baseline", "bench.baseline:app", factory=False, environment=environment),
    ]
    notes = []
    load_before = os.getloadavg()[0]
    try:
        for server in servers:
            await wait_ready(server)
        print("comparing answers ...", flush=True)
        await same_answers(servers, cases)
        results: dict[str, Measured] = {}
        for case in cases:
            print(f"load: {case.name} ...", flush=True)
            results[case.name] = Measured(
                statements={GATEWAY: statements[case.name], CACHED: cached_statements[case.name]}
            )
            measure(servers, case, results[case.name])
            if case.query == DASHBOARD:
                gateway, with_cache, baseline = (server.rss_mib for server in servers)
                notes.append(
                    f"- RSS after the dashboard load: gateway {gateway:.0f} MiB ({with_cache:.0f} MiB with the"
                    f" response cache), baseline {baseline:.0f} MiB"
                )
        print("pairs, alternating at 1 connection ...", flush=True)
        by_name = {case.name: case for case in cases}
        pairs = {server.name: pair_latencies(server, by_name) for server in (servers[0], servers[2])}
        if not only:
            print("recording usage ...", flush=True)
            graphql, direct = await bench_recording(data, servers[0])
            notes.append(
                f"- recordUsage, batches of 1,000: {graphql:,.0f} events/s through GraphQL, {direct:,.0f} events/s"
                f" calling record_usage directly ({ratio(graphql, direct)}x)"
            )
    finally:
        for server in servers:
            server.process.terminate()
            server.process.wait()

    print()
    print(
        f"{os.cpu_count()} cores ({cpu_model()}); servers on CPU 0, wrk on CPU 1; the median of {ROUNDS} runs of"
        f" {math.ceil(SECONDS / ROUNDS)} s per server, taking turns; rps at 16 connections, p50 / p99 at 1"
        " connection; load average (1 min) at the start"
        f" {load_before:.1f}, at the end {os.getloadavg()[0]:.1f}"
    )
    print()
    print("\n".join(table(results)))
    print()
    print("\n".join(pair_lines(pairs) + notes))
    if dashboard_statements:
        counts = ", ".join(f"{label}: {count}" for label, count in dashboard_statements.items())
        print(f"- dashboard SQL statements per request: {counts}")


if __name__ == "__main__":
    asyncio.run(main())
