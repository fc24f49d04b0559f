"""Every Prometheus metric of the service, in one place (prometheus-client).

Two scopes:
- process-wide (the default registry): Stripe call latency and errors, auto-recharge outcomes, reconciliation
  runs, and prometheus-client's own process and Python collectors. The worker and the Stripe wrapper record
  these wherever they run (the gateway's embedded worker, `cli worker`).
- per app (`AppMetrics`): HTTP requests per route, GraphQL requests per operation name, the database pool
  (read from the engine's pool at scrape time) and worker lag (measured from the database at scrape time, so
  a worker that stopped shows a lag that grows instead of its last value). `/metrics` renders an app's
  registry, which includes the process-wide one.

Label values are bounded: routes and methods by fixed lists, GraphQL operation names by `OperationLabels`,
Stripe operations and outcomes by the code that names them.
"""

import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.pool import Pool, QueuePool

from billing.observability.request import RequestObservation

# Requests are answered within GRAPHQL_TIMEOUT_SECONDS (30 by default); Stripe within its own timeout (20).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STRIPE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)

# --- process-wide ----------------------------------------------------------------------------------------

STRIPE_CALL_SECONDS = Histogram(
    "stripe_request_duration_seconds",
    "Calls to Stripe through the gateway, by operation and outcome (ok, or the domain error raised).",
    ["operation", "outcome"],
    buckets=STRIPE_BUCKETS,
)
RECHARGE_OUTCOMES = Counter(
    "recharge_outcomes_total",
    "Auto-recharges finished, by the status they finished in (a late success after a failure counts in "
    "both), and attempts postponed because Stripe was unavailable.",
    ["outcome"],
)
RECONCILIATION_RUNS = Counter(
    "reconciliation_runs_total",
    "Periodic reconciliation passes of the worker, by outcome (completed, stripe_unavailable, failed).",
    ["outcome"],
)
RECONCILIATION_LAST_COMPLETED = Gauge(
    "reconciliation_last_completed_timestamp_seconds",
    "When this process last completed a reconciliation pass (Unix time).",
)
RECONCILED_PAYMENTS = Counter(
    "reconciled_payments_total",
    "Payments settled by reconciliation, by result (succeeded, failed, still_pending, paid_late).",
    ["result"],
)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@contextmanager
def stripe_call(operation: str) -> Iterator[None]:
    """Time one Stripe operation; the outcome is `ok` or the snake-cased class of what it raised."""
    started = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except BaseException as error:  # cancellation (a request's time budget) is an outcome too
        outcome = _snake(type(error).__name__)
        raise
    finally:
        STRIPE_CALL_SECONDS.labels(operation, outcome).observe(time.perf_counter() - started)


def recharge_outcome(outcome: str) -> None:
    """A recharge finished in status `outcome`, or was `postponed`."""
    RECHARGE_OUTCOMES.labels(outcome).inc()


def reconciliation_completed(results: dict[str, int]) -> None:
    RECONCILIATION_RUNS.labels("completed").inc()
    RECONCILIATION_LAST_COMPLETED.set_to_current_time()
    for result, count in results.items():
        RECONCILED_PAYMENTS.labels(result).inc(count)


# --- per app ---------------------------------------------------------------------------------------------

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class OperationLabels:
    """GraphQL operation names as label values, bounded: the first `limit` distinct names seen are kept (cut
    to `length` characters), any later one is `other`, so clients inventing names cannot grow the series."""

    def __init__(self, limit: int = 100, length: int = 64) -> None:
        self.limit = limit
        self.length = length
        self._seen: set[str] = set()

    def __call__(self, name: str | None) -> str:
        if not name:
            return "anonymous"
        name = name[: self.length]
        if name in self._seen:
            return name
        if len(self._seen) >= self.limit:
            return "other"
        self._seen.add(name)
        return name


class PoolCollector(Collector):
    """The database pool's state, read from the engine's pool at each scrape (no bookkeeping per checkout)."""

    def __init__(self, pool: Callable[[], Pool | None]) -> None:
        self._pool = pool

    def collect(self) -> Iterable[Metric]:
        pool = self._pool()
        if not isinstance(pool, QueuePool):  # NullPool and StaticPool keep no counts
            return
        figures = {
            "db_pool_size": ("Connections the pool keeps open (DB_POOL_SIZE).", pool.size()),
            "db_pool_checked_out": ("Connections in use.", pool.checkedout()),
            "db_pool_checked_in": ("Open connections idle in the pool.", pool.checkedin()),
            # SQLAlchemy counts overflow from -size up; only connections beyond the size are overflow.
            "db_pool_overflow": (
                "Connections open beyond the size (up to DB_MAX_OVERFLOW).",
                max(0, pool.overflow()),
            ),
        }
        for name, (documentation, value) in figures.items():
            yield GaugeMetricFamily(name, documentation, value=value)


class AppMetrics:
    """One app's registry: its HTTP and GraphQL request metrics, pool and worker lag, plus the process's."""

    def __init__(self, pool: Callable[[], Pool | None]) -> None:
        self.registry = CollectorRegistry()
        # A registry is itself a collector: the app's scrape includes every process-wide metric.
        self.registry.register(REGISTRY)
        self.registry.register(PoolCollector(pool))
        self.operation_label = OperationLabels()
        self.http_requests = Counter(
            "http_requests",
            "HTTP requests by method, route (unknown paths are `other`) and status.",
            ["method", "path", "status"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route.",
            ["method", "path"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.graphql_requests = Counter(
            "graphql_requests",
            "GraphQL requests by operation name (`anonymous` unnamed, `invalid` when it did not validate, "
            "`none` when refused before the schema, `other` past the label limit) and outcome (ok, error, "
            "refused).",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.graphql_seconds = Histogram(
            "graphql_request_duration_seconds",
            "Time to answer GraphQL requests over HTTP, by operation name.",
            ["operation"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.oldest_due_recharge = Gauge(
            "worker_oldest_due_recharge_age_seconds",
            "How long the oldest recharge that is due has waited (0 when none): the worker's lag.",
            registry=self.registry,
        )

    def request_served(self, method: str, path: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.http_requests.labels(method, path, str(status)).inc()
        self.http_seconds.labels(method, path).observe(seconds)

    def graphql_served(self, observation: RequestObservation, seconds: float) -> str:
        """Counts and times a GraphQL request; returns its operation label."""
        if not observation.reached_schema:  # refused before it: 401, 406, 413, 415, a malformed body
            operation, outcome = "none", "refused"
        else:
            operation = (
                self.operation_label(observation.operation_name) if observation.executed else "invalid"
            )
            outcome = "error" if observation.errors else "ok"
        self.graphql_requests.labels(operation, outcome).inc()
        self.graphql_seconds.labels(operation).observe(seconds)
        return operation

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4
