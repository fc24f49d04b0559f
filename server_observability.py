"""The HTTP edge of observability (billing/observability): a request id, metrics and one log line per request,
and OpenTelemetry's ASGI middleware when tracing is on."""

import logging
import time

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import Pool
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing.db import SessionFactory
from billing.observability.metrics import AppMetrics
from billing.observability.request import observed_request, request_id_from

REQUEST_ID_HEADER = "X-Request-Id"
# Route labels: unknown paths share one, so scanners cannot grow the label set without bound.
KNOWN_PATHS = frozenset({"/graphql", "/webhooks/stripe", "/healthz", "/readyz", "/metrics"})
STATIC_PREFIX = "/static/"
# Probes answer every few seconds: their lines would drown the rest at INFO.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

logger = logging.getLogger("billing.http")


def app_engine(app: Starlette) -> AsyncEngine | None:
    """The engine behind the app's sessions (tests bind them to a connection of theirs), once it is set."""
    factory: SessionFactory | None = getattr(app.state, "session_factory", None)
    bind = factory.kw.get("bind") if factory is not None else None
    if isinstance(bind, AsyncConnection):
        return bind.engine
    return bind if isinstance(bind, AsyncEngine) else None


def app_pool(app: Starlette) -> Pool | None:
    engine = app_engine(app)
    return engine.sync_engine.pool if engine is not None else None


def route_of(path: str) -> str:
    if path in KNOWN_PATHS:
        return path
    return "/static" if path.startswith(STATIC_PREFIX) else "other"


class RequestObservability:
    """Every HTTP request gets an id (the client's sane `X-Request-Id`, else a new one) that is returned in the
    `X-Request-Id` response header, bound to every log line written while it is served, and added to GraphQL
    errors; it is counted and timed per route (and per GraphQL operation) and logged once when answered."""

    def __init__(self, app: ASGIApp, metrics: AppMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers(scope=scope).get(REQUEST_ID_HEADER))
        route = route_of(scope["path"])
        method = scope["method"]
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        span = trace.get_current_span()  # the server span while tracing; a no-op otherwise
        if span.is_recording():
            span.set_attribute("http.request.header.x_request_id", request_id)
        with observed_request(request_id) as observation:
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                self.metrics.request_served(method, route, status, seconds)
                fields: dict[str, object] = {"method": method, "path": scope["path"][:200], "status": status}
                if route == "/graphql":
                    fields["operation"] = self.metrics.graphql_served(observation, seconds)
                fields["duration_ms"] = round(seconds * 1000, 1)
                level = logging.DEBUG if route in QUIET_PATHS and status < 400 else logging.INFO
                logger.log(level, "request", extra=fields)


def observability_middleware(metrics: AppMetrics, tracer_provider: TracerProvider | None) -> list[Middleware]:
    """The middleware to register, outermost first: the trace's server span (only when tracing is on) encloses
    the request's observation, so its log lines carry the trace id."""
    observed = [Middleware(RequestObservability, metrics=metrics)]
    if tracer_provider is None:
        return observed
    return [
        # The spans of each ASGI message sent or received say little and cost a span each.
        Middleware(
            OpenTelemetryMiddleware, tracer_provider=tracer_provider, exclude_spans=["receive", "send"]
        ),
        *observed,
    ]
