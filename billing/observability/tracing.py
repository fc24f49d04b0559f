"""OpenTelemetry tracing of requests, SQL and Stripe calls: off unless the standard environment variables ask.

`provider_from_environment` reads OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER and OTEL_EXPORTER_OTLP_(TRACES_)
ENDPOINT; the exporters and the resource read the rest themselves (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
OTEL_EXPORTER_OTLP_HEADERS, OTEL_TRACES_SAMPLER, ...). Unlike the SDK's own default (`otlp`), nothing is
exported until an exporter or an OTLP endpoint is named: then no provider exists, nothing is instrumented, and
a request pays nothing for tracing.

Instrumentation is applied to the objects it concerns (this app's engine, the Stripe client's HTTP client),
with the provider passed explicitly, never by patching libraries process-wide: tests build apps with an
in-memory exporter beside apps without tracing in one process.
"""

import logging
import os
from collections.abc import Callable, Mapping

import httpx
from opentelemetry import metrics as otel_metrics
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.instrumentation.sqlalchemy.version import __version__ as sqlalchemy_instrumentation_version
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "billing-gateway"


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _exporter(name: str) -> SpanExporter | None:
    if name == "otlp":
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        if protocol != "http/protobuf":
            logger.warning("OTLP protocol %r is not installed; exporting over http/protobuf", protocol)
        # Imported only when asked for: it brings protobuf and requests along.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # endpoint, headers, timeout and compression from OTEL_EXPORTER_OTLP_*
    if name == "console":
        return ConsoleSpanExporter()
    logger.warning("OTEL_TRACES_EXPORTER %r is not supported here (otlp, console, none): ignored", name)
    return None


def provider_from_environment(environ: Mapping[str, str] = os.environ) -> TracerProvider | None:
    """A tracer provider exporting as the environment asks, or None when it asks for nothing (the default)."""
    if _true(environ.get("OTEL_SDK_DISABLED")):
        return None
    names_setting = environ.get("OTEL_TRACES_EXPORTER")
    if names_setting is None:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        names = ["otlp"] if endpoint else []
    else:
        names = [name.strip().lower() for name in names_setting.split(",") if name.strip()]
    if "none" in names:
        return None
    exporters = [exporter for exporter in map(_exporter, names) if exporter is not None]
    if not exporters:
        return None
    return provider_with(*(BatchSpanProcessor(exporter) for exporter in exporters))


def provider_with(*processors: SpanProcessor) -> TracerProvider:
    """A provider for this service (OTEL_SERVICE_NAME overrides the name; the sampler comes from OTEL_TRACES_*)."""
    resource = Resource.create({SERVICE_NAME: DEFAULT_SERVICE_NAME}).merge(Resource.create())
    provider = TracerProvider(resource=resource)
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def trace_engine(engine: AsyncEngine, provider: TracerProvider) -> Callable[[], None]:
    """A span per SQL statement on `engine`; returns what removes them (the engine may outlive the app: tests)."""
    registered = EngineTracer._remove_event_listener_params
    before = len(registered)
    EngineTracer(  # type: ignore[no-untyped-call]  # the instrumentation ships no annotations
        provider.get_tracer(__name__, sqlalchemy_instrumentation_version),
        engine.sync_engine,
        # The instrumentation also counts connections as an OpenTelemetry metric; /metrics reads the pool.
        otel_metrics.NoOpMeter(__name__).create_up_down_counter("db.client.connections.usage"),
    )
    listeners = registered[before:]

    def remove() -> None:
        for target, identifier, function in listeners:
            instance = target()
            if instance is not None and event.contains(instance, identifier, function):
                event.remove(instance, identifier, function)
            if (target, identifier, function) in registered:
                registered.remove((target, identifier, function))

    return remove


def trace_http_client(client: httpx.AsyncClient, provider: TracerProvider) -> None:
    """A client span (with W3C trace context sent along) for each request `client` makes."""
    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)
