"""Observability: Prometheus metrics on /metrics, structured logs and GraphQL errors carrying the request's id,
and OpenTelemetry tracing that is off unless the environment asks for it.

Process-wide metrics (Stripe, recharges) are compared before and after, since other tests move them too;
an app's own metrics (requests, pool, worker lag) start from nothing with each app.
"""

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import structlog
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.auto_recharge import engine as recharge_engine
from billing.config import Settings
from billing.db import SessionFactory
from billing.ledger import history as transactions
from billing.observability import tracing
from billing.observability.logs import LogFormat, configure_logging
from billing.observability.metrics import OperationLabels
from billing.stripe_gateway import PaymentProviderRejected, StripeGateway
from server import create_app
from tests.support.factories import admin_key, create_account, create_company, member_key
from tests.support.gateway import open_gateway
from tests.support.graphql_client import post_graphql
from tests.support.payments_helpers import ready_account
from tests.support.stripe_server import LocalStripe, stripe_settings
from tests.support.usage_factories import credit, enable_auto_recharge, spend

NAMED = "query AccountName { account { name } }"
BAD_ARGUMENT = "query History { account { transactions(first: 1000) { edges { cursor } } } }"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


async def scrape(client: httpx.AsyncClient, key: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def sample(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def process_wide(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ------------------------------------------------------------------------------------------------ metrics


async def test_requests_are_counted_and_timed_per_operation_name_and_route(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    account = await create_account(session)
    key, admin = await member_key(session, account), await admin_key(session)
    for _ in range(2):
        assert (await post_graphql(client, key, NAMED)).status_code == 200
    await post_graphql(client, key, "{ account { name } }")
    await post_graphql(client, key, "query Broken { account { nope } }")
    await post_graphql(client, "bk_wrong_key", NAMED)
    await client.get("/healthz")

    metrics = await scrape(client, admin)
    assert metrics[sample("graphql_request_duration_seconds_count", operation="AccountName")] == 2
    assert metrics[sample("graphql_requests_total", operation="AccountName", outcome="ok")] == 2
    assert metrics[sample("graphql_requests_total", operation="anonymous", outcome="ok")] == 1
    # A name in a document that did not validate is not trusted as a label.
    assert metrics[sample("graphql_requests_total", operation="invalid", outcome="error")] == 1
    assert metrics[sample("graphql_requests_total", operation="none", outcome="refused")] == 1
    assert sample("graphql_requests_total", operation="Broken", outcome="error") not in metrics
    assert metrics[sample("http_request_duration_seconds_count", method="POST", path="/graphql")] == 5
    assert metrics[sample("http_requests_total", method="POST", path="/graphql", status="401")] == 1
    assert metrics[sample("http_requests_total", method="GET", path="/healthz", status="200")] == 1
    bucket = sample("graphql_request_duration_seconds_bucket", le="+Inf", operation="AccountName")
    assert metrics[bucket] == 2


def test_operation_labels_are_bounded() -> None:
    label = OperationLabels(limit=2, length=8)
    assert [label(None), label(""), label("First"), label("Second"), label("Third"), label("First")] == [
        "anonymous",
        "anonymous",
        "First",
        "Second",
        "other",
        "First",
    ]
    assert OperationLabels(length=8)("AVeryLongOperationName") == "AVeryLon"


async def test_the_pool_is_read_at_scrape_time(
    session: AsyncSession, client: httpx.AsyncClient, connection: AsyncConnection
) -> None:
    admin = await admin_key(session)
    pool = connection.engine.sync_engine.pool
    metrics = await scrape(client, admin)
    assert metrics[sample("db_pool_size")] == pool.size()  # type: ignore[attr-defined]
    # The test's own connection is checked out while it runs.
    assert metrics[sample("db_pool_checked_out")] >= 1
    assert metrics[sample("db_pool_overflow")] >= 0
    assert sample("db_pool_checked_in") in metrics


async def test_stripe_calls_are_timed_with_their_outcome(
    session: AsyncSession, client: httpx.AsyncClient, stripe_gateway: StripeGateway
) -> None:
    ok = {"operation": "save the customer", "outcome": "ok"}
    rejected = {"operation": "read the card", "outcome": "payment_provider_rejected"}
    before_ok = process_wide("stripe_request_duration_seconds_count", **ok)
    before_rejected = process_wide("stripe_request_duration_seconds_count", **rejected)

    await stripe_gateway.ensure_customer(
        customer_id=None, name="Timed", phone=None, address=None, account_id=1
    )
    with pytest.raises(PaymentProviderRejected):
        await stripe_gateway.retrieve_card("pm_does_not_exist")

    metrics = await scrape(client, await admin_key(session))
    assert metrics[sample("stripe_request_duration_seconds_count", **ok)] == before_ok + 1
    assert metrics[sample("stripe_request_duration_seconds_count", **rejected)] == before_rejected + 1
    assert metrics[sample("stripe_request_duration_seconds_bucket", le="20.0", **ok)] == before_ok + 1


async def test_worker_lag_and_recharge_outcomes(
    session: AsyncSession,
    session_factory: SessionFactory,
    client: httpx.AsyncClient,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
) -> None:
    admin = await admin_key(session)
    assert (await scrape(client, admin))[sample("worker_oldest_due_recharge_age_seconds")] == 0
    account, card = await ready_account(session, stripe_gateway, localstripe)
    await enable_auto_recharge(session, account, card, threshold_minor=5_000, amount_minor=10_000)
    await credit(session, account, 6_000)
    await spend(session, account, "12.00", at=NOW)  # below the threshold: a recharge due since NOW

    lag = (await scrape(client, admin))[sample("worker_oldest_due_recharge_age_seconds")]
    assert lag >= (datetime.now(UTC) - NOW).total_seconds() - 60
    succeeded = process_wide("recharge_outcomes_total", outcome="succeeded")

    assert await recharge_engine.run_once(session_factory, stripe_gateway, now=NOW) == 1

    metrics = await scrape(client, admin)
    assert metrics[sample("recharge_outcomes_total", outcome="succeeded")] == succeeded + 1
    assert metrics[sample("worker_oldest_due_recharge_age_seconds")] == 0


async def test_metrics_are_for_admin_keys(session: AsyncSession, client: httpx.AsyncClient) -> None:
    key = await member_key(session, await create_account(session))
    assert (await client.get("/metrics", headers={"Authorization": f"Bearer {key}"})).status_code == 403
    assert (await client.get("/metrics")).status_code == 401


# ------------------------------------------------------------------------------------- request id and logs


async def test_a_sane_request_id_is_echoed_and_any_other_replaced(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/healthz", headers={"X-Request-Id": "frontend-7f3a:42"})
    assert echoed.headers["X-Request-Id"] == "frontend-7f3a:42"
    for path, header in [("/healthz", None), ("/nowhere", "has spaces"), ("/readyz", "x" * 129)]:
        headers = {"X-Request-Id": header} if header else {}
        response = await client.get(path, headers=headers)
        generated = response.headers["X-Request-Id"]
        assert generated != header and len(generated) == 32 and int(generated, 16) >= 0


async def test_graphql_errors_carry_the_request_id(session: AsyncSession, client: httpx.AsyncClient) -> None:
    key = await member_key(session, await create_account(session))
    response = await post_graphql(client, key, BAD_ARGUMENT, headers={"X-Request-Id": "support-1234"})
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "first", "requestId": "support-1234"}
    generated = await post_graphql(client, key, BAD_ARGUMENT)
    assert generated.json()["errors"][0]["extensions"]["requestId"] == generated.headers["X-Request-Id"]
    # A validation error comes from a cache shared by requests: each answer still names its own request.
    answers = [await post_graphql(client, key, "{ nope }") for _ in range(2)]
    ids = [answer.json()["errors"][0]["extensions"]["requestId"] for answer in answers]
    assert ids == [answer.headers["X-Request-Id"] for answer in answers] and ids[0] != ids[1]


REQUEST_ERRORS_OF_THE_HTTP_LAYER = {
    "unknown operation name": (
        {"query": "query A { __typename }", "operationName": "B"},
        "GRAPHQL_VALIDATION_FAILED",
    ),
    "a subscription over HTTP": ("subscription { accountUpdated { id } }", "GRAPHQL_VALIDATION_FAILED"),
    "an unknown persisted document": ({"documentId": "sha256:" + "0" * 64}, "PERSISTED_QUERY_NOT_FOUND"),
    "a NUL character": ('{ account { name(x: "\\u0000") } }', "BAD_USER_INPUT"),
    "an empty document": ("", "GRAPHQL_PARSE_FAILED"),
}


@pytest.mark.parametrize(
    ("body", "code"), REQUEST_ERRORS_OF_THE_HTTP_LAYER.values(), ids=REQUEST_ERRORS_OF_THE_HTTP_LAYER.keys()
)
async def test_request_errors_of_the_http_layer_carry_the_request_id(
    session: AsyncSession, client: httpx.AsyncClient, body: str | dict[str, object], code: str
) -> None:
    """Answered before or around the schema (server_graphql.py), not by the error policy: the id all the same."""
    key = await member_key(session, await create_account(session))
    response = await post_graphql(client, key, body, headers={"X-Request-Id": "support-5678"})
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": code, "requestId": "support-5678"}, error


REFUSALS_BEFORE_THE_SCHEMA = {
    "no key": ({"Content-Type": "application/json"}, b'{"query": "{ __typename }"}', 401, "UNAUTHENTICATED"),
    "an unknown key": (
        {"Content-Type": "application/json", "Authorization": "Bearer bk_unknown_secret"},
        b'{"query": "{ __typename }"}',
        401,
        "UNAUTHENTICATED",
    ),
    "not JSON": ({"Content-Type": "text/plain"}, b"{ __typename }", 415, "UNSUPPORTED_MEDIA_TYPE"),
}


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    REFUSALS_BEFORE_THE_SCHEMA.values(),
    ids=REFUSALS_BEFORE_THE_SCHEMA.keys(),
)
async def test_refusals_before_the_schema_carry_the_request_id(
    client: httpx.AsyncClient, headers: dict[str, str], body: bytes, status: int, code: str
) -> None:
    response = await client.post("/graphql", content=body, headers=headers | {"X-Request-Id": "support-9012"})
    assert response.status_code == status
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": code, "requestId": "support-9012"}, error


async def test_a_clients_mistake_is_not_logged_as_an_error_and_a_crash_is_logged_once(
    session: AsyncSession,
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = await member_key(session, await create_account(session))
    caplog.set_level(logging.INFO)
    await post_graphql(client, key, BAD_ARGUMENT)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.getMessage() for record in caplog.records if record.name == "billing.graphql"] == [
        "graphql error"
    ]

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a crash inside a resolver")

    caplog.clear()
    monkeypatch.setattr(transactions, "history", broken)
    await post_graphql(
        client, key, "query History { account { transactions(first: 5) { edges { cursor } } } }"
    )
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None, errors


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(level="INFO", log_format=LogFormat.JSON, stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        structlog.reset_defaults()


async def test_every_log_line_of_a_request_is_json_with_its_id(
    session: AsyncSession,
    client: httpx.AsyncClient,
    json_logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = await member_key(session, await create_account(session))

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a crash inside a resolver")

    monkeypatch.setattr(transactions, "history", broken)
    response = await post_graphql(
        client, key, "query History { account { transactions(first: 5) { edges { cursor } } } }"
    )
    request_id = response.headers["X-Request-Id"]
    assert response.json()["errors"][0]["extensions"]["requestId"] == request_id
    structlog.get_logger("billing.test").info("after the request", answered=True)

    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    ours = [line for line in lines if line.get("request_id") == request_id]
    # The existing stdlib `logging` call that reports the masked crash, with its traceback, and the access line.
    crash = next(line for line in ours if line["logger"] == "billing.graphql" and line["level"] == "error")
    assert crash["level"] == "error" and "a crash inside a resolver" in crash["exception"]
    access = next(line for line in ours if line["event"] == "request")
    assert access["logger"] == "billing.http"
    assert (access["method"], access["path"], access["status"], access["operation"]) == (
        "POST",
        "/graphql",
        200,
        "History",
    )
    assert access["duration_ms"] >= 0 and "timestamp" in access
    # structlog's own loggers end in the same handler; outside a request no id is bound.
    after = next(line for line in lines if line["event"] == "after the request")
    assert after["answered"] is True and "request_id" not in after


# ------------------------------------------------------------------------------------------------ tracing


def test_tracing_is_off_unless_the_environment_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = "http://127.0.0.1:4318"
    assert tracing.provider_from_environment({}) is None
    assert tracing.provider_from_environment({"OTEL_TRACES_EXPORTER": "none"}) is None
    assert (
        tracing.provider_from_environment(
            {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
        )
        is None
    )
    for asked in ({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, {"OTEL_TRACES_EXPORTER": "console"}):
        provider = tracing.provider_from_environment(asked)
        assert isinstance(provider, TracerProvider), asked
        provider.shutdown()  # nothing was recorded, so nothing is sent

    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    app = create_app(Settings())  # only its middleware is looked at: nothing runs
    assert OpenTelemetryMiddleware.__name__ not in [
        getattr(m.cls, "__name__", "") for m in app.user_middleware
    ]


def children_of(spans: list[ReadableSpan], root: ReadableSpan) -> list[ReadableSpan]:
    assert root.context is not None
    return [
        span
        for span in spans
        if span.parent is not None
        and span.context is not None
        and span.context.trace_id == root.context.trace_id
    ]


async def test_a_request_is_traced_through_sql_and_stripe(
    session: AsyncSession, session_factory: SessionFactory, localstripe_url: str
) -> None:
    account = await create_account(session)
    await create_company(session, account)
    key = await member_key(session, account)
    await session.commit()  # visible to the service's own sessions (in tests, this releases a savepoint)
    exporter = InMemorySpanExporter()
    provider = tracing.provider_with(SimpleSpanProcessor(exporter))

    async with open_gateway(
        stripe_settings(localstripe_url), session_factory, tracer_provider=provider
    ) as client:
        response = await post_graphql(client, key, "mutation Card { createSetupIntent { __typename } }")
    assert response.json()["data"] == {"createSetupIntent": {"__typename": "CreateSetupIntentSuccess"}}

    spans = list(exporter.get_finished_spans())
    [server] = [span for span in spans if span.kind is SpanKind.SERVER]
    assert server.attributes is not None
    assert server.attributes["graphql.operation.name"] == "Card"
    assert server.attributes["http.request.header.x_request_id"] == response.headers["X-Request-Id"]
    children = children_of(spans, server)
    sql = [
        span for span in children if span.kind is SpanKind.CLIENT and "db.system" in (span.attributes or {})
    ]
    stripe_calls = [
        span
        for span in children
        if span.kind is SpanKind.CLIENT and "/v1/" in str(dict(span.attributes or {}))
    ]
    assert sql, [span.name for span in spans]
    assert {span.name for span in stripe_calls} == {"POST"}, [span.name for span in spans]
    assert len(stripe_calls) >= 2  # the customer, then the SetupIntent

    # The app is gone: its engine (the test's, here) is no longer traced.
    exporter.clear()
    await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    assert exporter.get_finished_spans() == ()
