"""The composition root: settings, engine, the Strawberry schema, Starlette routes and the lifespan."""

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.types.execution import ExecutionResult

from billing import production
from billing import worker as worker_loops
from billing.audit.actors import acting_as
from billing.config import VAR_DIR, Environment, Settings
from billing.data_version import service as data_version
from billing.db import (
    DatabaseBusy,
    SessionFactory,
    SharedRead,
    engine_from_settings,
    read_session,
    session_factory,
)
from billing.events import connections as subscription_connections
from billing.events import live as live_events
from billing.health_repository import database_answers
from billing.keys import service as auth
from billing.keys.throttle import AuthThrottle, Refusal
from billing.observability import tracing
from billing.observability.metrics import AppMetrics
from billing.observability.worker_lag import oldest_due_recharge_age
from billing.stripe_gateway import StripeGateway
from models import PrincipalKind
from models.types import utcnow
from resolvers.events import SubscriptionContext
from resolvers.stripe_webhooks import stripe_webhook_endpoint
from root.limits import OperationLimits, document_checks, validation_rules
from root.schema import build_schema
from schema.context import Context
from server_cache import ResponseCache
from server_graphiql import render_graphiql
from server_graphql import GraphQLView, refusal_error
from server_graphql_ws import Close, CloseCode, Limits, SubscriptionServer
from server_observability import app_engine, app_pool, observability_middleware
from server_trusted_documents import TrustedDocuments

ROOT = Path(__file__).resolve().parent
EXAMPLE_QUERY = (ROOT / "schema" / "billing_page.graphql").read_text(encoding="utf-8")
DEMO_KEY_FILE = VAR_DIR / "demo-api-key"


def unauthorized(message: str) -> JSONResponse:
    # Nothing was executed, so there is no `data` entry (GraphQL over HTTP).
    return JSONResponse(
        {"errors": [refusal_error(message, "UNAUTHENTICATED")]},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="billing"'},
    )


def too_many_failures(refusal: Refusal) -> JSONResponse:
    seconds = refusal.retry_after_seconds
    message = f"Too many failed authentication attempts; retry in {seconds} s."
    return JSONResponse(
        {"errors": [refusal_error(message, "RATE_LIMITED", retryAfter=seconds)]},
        status_code=429,
        headers={"Retry-After": str(seconds)},
    )


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def service_busy(settings: Settings) -> JSONResponse:
    """Load shedding: no connection (or SQLite write lock) came free in time; nothing was done."""
    return JSONResponse(
        {"errors": [refusal_error("The service is busy; retry shortly.", "SERVICE_UNAVAILABLE")]},
        status_code=503,
        headers={"Retry-After": str(settings.retry_after_seconds)},
    )


async def authenticated(request: Request, reads: SharedRead) -> auth.Principal | Response:
    """The caller behind the request's bearer key, or the 401 (or, under load, 503) to answer with.

    The lookup runs in `reads`, left open for the request's next reads (a registered query's); the caller
    closes it.
    """
    token = bearer_token(request)
    if token is None:
        return unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    try:
        return await reads.run(lambda session: auth.authenticate(session, token))
    except auth.InvalidApiKey as error:
        await reads.close()
        # Counted only now, after the secret was checked: a right key is never refused (auth_throttle).
        throttle: AuthThrottle = request.app.state.auth_throttle
        address = request.client.host if request.client else None
        refusal = await throttle.failed(key_prefix=auth.key_prefix(token), address=address)
        return too_many_failures(refusal) if refusal else unauthorized(error.message)
    except DatabaseBusy:
        # A key we could not check is not a bad key: the client should retry, not re-authenticate.
        return service_busy(request.app.state.settings)


async def authenticated_socket(websocket: WebSocket, token: str | None) -> auth.Principal | Close:
    """The caller behind a WebSocket's `connection_init` key, or the close to answer with (as `authenticated`
    does over HTTP, with the same count of failures)."""
    if token is None:
        return Close(CloseCode.FORBIDDEN, 'Forbidden: send {"Authorization": "Bearer <key>"}')
    try:
        async with read_session(websocket.app.state.session_factory) as session:
            return await auth.authenticate(session, token)
    except auth.InvalidApiKey as error:
        throttle: AuthThrottle = websocket.app.state.auth_throttle
        address = websocket.client.host if websocket.client else None
        refusal = await throttle.failed(key_prefix=auth.key_prefix(token), address=address)
        if refusal:
            seconds = refusal.retry_after_seconds
            return Close(CloseCode.FORBIDDEN, f"Too many failed key checks; retry in {seconds} s")
        return Close(CloseCode.FORBIDDEN, f"Forbidden: {error.message}")
    except DatabaseBusy:
        return Close(CloseCode.TRY_AGAIN_LATER, "The service is busy; retry shortly")


class BillingGraphQL(GraphQLView):
    """The schema over HTTP (server_graphql), given the request's principal by `GraphQLEndpoint`."""

    def __init__(self, settings: Settings) -> None:
        limits = OperationLimits(
            max_tokens=settings.graphql_max_tokens,
            max_depth=settings.graphql_max_depth,
            max_aliases=settings.graphql_max_aliases,
            max_root_fields=settings.graphql_max_root_fields,
            max_repeated_fields=settings.graphql_max_repeated_fields,
            max_cost=settings.graphql_max_cost,
            statement_timeout_seconds=settings.db_statement_timeout_seconds,
        )
        schema = build_schema(introspection=settings.introspection_enabled, limits=limits)
        checks, rules = document_checks(schema.extensions), validation_rules(schema.extensions)
        super().__init__(
            schema,
            max_body_bytes=settings.graphql_max_body_bytes,
            timeout_seconds=settings.graphql_timeout_seconds,
            trusted=TrustedDocuments.load(
                settings.trusted_documents_manifest, lambda text: checks.pin(schema._schema, text, rules)
            ),
            cache=ResponseCache(settings.response_cache_max_bytes)
            if settings.response_cache_max_bytes
            else None,
        )
        self.settings = settings

    def requires_trusted(self, request: Request) -> bool:
        principal: auth.Principal = request.state.principal
        return self.settings.trusted_documents_only and principal.kind is PrincipalKind.MEMBER

    async def cache_scope(self, request: Request) -> Hashable | None:
        """The key (who asks, the month, and the data version of all it may see): a revoked key never gets
        here (the key is checked on every request), and a write anywhere changes the version it reads."""
        principal: auth.Principal = request.state.principal
        reads: SharedRead = request.state.reads
        try:
            version = await reads.run(lambda session: data_version.current(session, principal))
        except DatabaseBusy:
            return None  # answered uncached, which sheds as usual
        return principal.api_key_id, data_version.period(utcnow()), version

    async def get_context(self, request: Request, *, registered_query: bool) -> Context:
        reads: SharedRead = request.state.reads
        if not registered_query:
            await reads.close()  # an operation that may wait on Stripe holds no connection meanwhile
        context = Context(
            settings=self.settings,
            principal=request.state.principal,
            session_factory=request.app.state.session_factory,
            stripe_gateway=request.app.state.stripe,
            reads=reads if registered_query else SharedRead(request.app.state.session_factory),
        )
        request.state.context = context
        return context

    async def process_result(self, request: Request, result: ExecutionResult) -> ExecutionResult:
        context: Context | None = getattr(request.state, "context", None)
        if context is not None:
            await context.finish()
        if context is not None and context.database_busy:
            raise ServiceBusy
        return result

    async def release(self, context: object) -> None:
        assert isinstance(context, Context)
        await asyncio.shield(context.finish())


class ServiceBusy(Exception):
    """Raised out of the GraphQL view so the endpoint answers 503 instead of a partial result."""


def graphiql_page(settings: Settings) -> Response:
    """The offline GraphiQL page, pre-filled in development with the demo key that `make run` wrote."""
    if not settings.graphiql_enabled:
        return PlainTextResponse("GraphiQL is disabled here; POST GraphQL requests to /graphql.", 404)
    headers = ""
    if settings.environment is Environment.DEVELOPMENT and DEMO_KEY_FILE.exists():
        key = DEMO_KEY_FILE.read_text(encoding="utf-8").strip()
        headers = json.dumps({"Authorization": f"Bearer {key}"}, indent=2)
    return HTMLResponse(render_graphiql(EXAMPLE_QUERY, headers))


class GraphQLEndpoint:
    """Authenticates every GraphQL request before the schema sees it; GET without a `query` serves GraphiQL."""

    def __init__(self, graphql: BillingGraphQL) -> None:
        self.graphql = graphql

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if (
            request.method != "POST"
            and not {"query", "documentId", "extensions"} & request.query_params.keys()
        ):
            await graphiql_page(self.graphql.settings)(scope, receive, send)
            return
        # 406, 415 and an oversized Content-Length are answered before the key is looked up.
        refusal = self.graphql.refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        try:
            received = await self.graphql.receive(request)
        except ClientDisconnect:
            return  # the client hung up before its request was read: nobody to answer
        if isinstance(received, Response):
            await received(scope, receive, send)
            return
        reads = request.state.reads = SharedRead(request.app.state.session_factory)
        try:
            principal = await authenticated(request, reads)
            if isinstance(principal, Response):
                response = principal
            else:
                request.state.principal = principal
                # Whatever the operation commits is recorded as this key's doing (the audit trail).
                with acting_as(principal.actor):
                    response = await self.graphql.handle(request, received)
        except ServiceBusy:
            response = service_busy(self.graphql.settings)
        finally:
            await reads.close()
        await response(scope, receive, send)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    """Open like /healthz so probes need no key; it tells only whether the database answers."""
    factory: SessionFactory = request.app.state.session_factory
    try:
        async with read_session(factory) as session:
            await database_answers(session)
    except Exception as error:  # any failure means not ready; the reason goes to the probe's log
        return PlainTextResponse(f"database unreachable: {type(error).__name__}", status_code=503)
    return PlainTextResponse("ready")


async def metrics(request: Request) -> Response:
    """Admin keys only: the counters tell how the service is used (Prometheus text, this process's)."""
    reads = SharedRead(request.app.state.session_factory)
    try:
        principal = await authenticated(request, reads)
        if isinstance(principal, Response):
            return principal
        if principal.kind is not PrincipalKind.ADMIN:
            return PlainTextResponse("metrics are for admin keys", status_code=403)
        observed: AppMetrics = request.app.state.metrics
        age = await reads.run(lambda session: oldest_due_recharge_age(session, now=utcnow()))
        observed.oldest_due_recharge.set(age)
    except DatabaseBusy:
        return service_busy(request.app.state.settings)
    finally:
        await reads.close()
    body, content_type = observed.render()
    return Response(body, media_type=content_type)


def create_app(
    settings: Settings | None = None,
    *,
    sessions: SessionFactory | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Starlette:
    """The ASGI app. Tests pass `sessions` bound to their rolled-back connection, and a `tracer_provider` of
    their own; otherwise tracing is on only when the OpenTelemetry environment variables ask for it."""
    settings = settings or Settings()
    traced_by_environment = tracer_provider is None
    if tracer_provider is None:
        tracer_provider = tracing.provider_from_environment()
    # Read at scrape time from the app built below (its engine is made in the lifespan).
    observed = AppMetrics(pool=lambda: app_pool(app))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await production.refuse_if_unsafe(settings, sessions)
        engine = None
        if sessions is None:
            engine = engine_from_settings(settings)
            app.state.session_factory = session_factory(engine)
        traced_engine = app_engine(app)
        untrace = (
            tracing.trace_engine(traced_engine, tracer_provider)
            if tracer_provider is not None and traced_engine is not None
            else None
        )
        stop = asyncio.Event()
        # Subscriptions hear every process's commits through one transport (billing/live_events); with Redis
        # this process publishes its own to it, as every process that commits does.
        hub = app.state.live_events = live_events.EventHub(app.state.session_factory)
        carrier = live_events.transport(settings) if sessions is None else live_events.Transport.IN_PROCESS
        live_listener = asyncio.ensure_future(live_events.relay(settings, carrier, hub, stop))
        stop_publishing = live_events.publish_commits(settings)
        worker = None
        if settings.embedded_worker and app.state.stripe is not None:
            worker = asyncio.create_task(
                worker_loops.run(
                    app.state.session_factory,
                    app.state.stripe,
                    stop_event=stop,
                    settings=settings,
                )
            )
        # What start-up built (modules, the schema, caches) lives as long as the process: frozen, a full garbage
        # collection no longer walks it (a collection of everything took ~100 ms: the p99 at one connection).
        gc.freeze()
        try:
            yield
        finally:
            stop.set()
            if worker is not None:
                await worker
            await stop_publishing()  # after the worker's last commit
            if untrace is not None:
                untrace()
            await live_listener
            await subscriptions.connections.aclose()
            if engine is not None:
                await engine.dispose()
            if tracer_provider is not None and traced_by_environment:
                tracer_provider.shutdown()  # exports the spans still queued

    graphql = BillingGraphQL(settings)
    subscriptions = SubscriptionServer(
        graphql.schema,
        authenticate=authenticated_socket,
        make_context=lambda websocket, principal: SubscriptionContext(
            settings=settings,
            principal=principal,
            session_factory=websocket.app.state.session_factory,
            stripe_gateway=websocket.app.state.stripe,
            reads=SharedRead(websocket.app.state.session_factory),
            live_events=websocket.app.state.live_events,
        ),
        limits=Limits(
            connections_per_key=settings.subscription_connections_per_key,
            subscriptions_per_connection=settings.subscription_max_per_connection,
            init_timeout_seconds=settings.subscription_init_timeout_seconds,
            ping_seconds=settings.subscription_ping_seconds,
            pong_timeout_seconds=settings.subscription_pong_timeout_seconds,
            key_check_seconds=settings.subscription_key_check_seconds,
        ),
        connections=subscription_connections.from_settings(settings),
    )
    app = Starlette(
        routes=[
            Route("/graphql", GraphQLEndpoint(graphql), methods=["GET", "POST"]),
            WebSocketRoute("/graphql", subscriptions.serve),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            # Outside the Bearer check: Stripe signs its requests instead (verified on the raw body).
            Route("/webhooks/stripe", stripe_webhook_endpoint, methods=["POST"]),
            Mount("/static", StaticFiles(directory=ROOT / "static"), name="static"),
        ],
        lifespan=lifespan,
        middleware=observability_middleware(observed, tracer_provider),
    )
    app.state.settings = settings
    app.state.metrics = observed
    app.state.auth_throttle = AuthThrottle.from_settings(settings)
    app.state.stripe = (
        StripeGateway.from_settings(settings, tracer_provider=tracer_provider)
        if settings.stripe_secret_key
        else None
    )
    if sessions is not None:
        app.state.session_factory = sessions
    return app
