"""Operator commands: `python -m cli --help`. `dev` is what `make run` calls."""

import asyncio
import dataclasses
import getpass
import json
import os
import signal
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Annotated, TypeVar

import typer
import uvicorn
from alembic import command
from alembic.config import Config
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import demo, production
from billing import worker as worker_loops
from billing.accounts.repository import AccountRepository
from billing.audit import service as audit
from billing.audit.actors import Actor, acting_as, operator
from billing.auto_recharge import reconciliation
from billing.config import VAR_DIR, Settings
from billing.db import SessionFactory, engine_from_settings, session_factory, unit_of_work
from billing.events import live as live_events
from billing.fx import service as fx
from billing.keys import service as auth
from billing.observability.logs import LogFormat, configure_logging
from billing.pagination import MAX_PAGE_SIZE
from billing.scope import Scope
from billing.stripe_gateway import StripeGateway
from devtools import stripe_standin
from models import Account, Partner, PrincipalKind

ROOT = Path(__file__).resolve().parent
T = TypeVar("T")

app = typer.Typer(help="Billing gateway operations.", no_args_is_help=True, add_completion=False)


@app.callback()
def configure() -> None:
    """Every command logs through structlog: JSON lines on stderr, readable ones on a terminal or with
    LOG_FORMAT=console."""
    settings = Settings()
    log_format = LogFormat(settings.log_format) if settings.log_format else None
    configure_logging(level=settings.log_level, log_format=log_format)


def run_with_database(work: Callable[[SessionFactory], Awaitable[T]]) -> T:
    """Run `work` against DATABASE_URL; it opens its own transactions. What it changes, the audit trail records
    as made by the operator running the command."""

    async def main() -> T:
        engine = engine_from_settings(Settings())
        try:
            with acting_as(current_operator()):
                return await work(session_factory(engine))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def current_operator() -> Actor:
    """The person at the command line, by their OS user name (or uid, where the system knows no name)."""
    try:
        return operator(getpass.getuser())
    except (OSError, KeyError):
        return operator(f"uid {os.getuid()}")


def run_in_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction against DATABASE_URL."""

    async def in_one_transaction(factory: SessionFactory) -> T:
        async with unit_of_work(factory) as session:
            return await work(session)

    return run_with_database(in_one_transaction)


@app.command()
def migrate() -> None:
    """Bring the database schema to the latest migration."""
    settings = Settings()
    if settings.database_url.startswith("sqlite"):
        VAR_DIR.mkdir(exist_ok=True)
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = settings.database_url
    config.attributes["configure_logger"] = False  # alembic.ini's logging would replace ours
    command.upgrade(config, "head")


@app.command("create-account")
def create_account(
    name: str,
    currency: Annotated[str, typer.Option(help="ISO 4217 billing currency")] = "USD",
    country: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2")] = "US",
    time_zone: Annotated[str, typer.Option(help="IANA time zone")] = "UTC",
) -> None:
    async def work(session: AsyncSession) -> int:
        account = Account(name=name, currency=currency.upper(), country=country.upper(), time_zone=time_zone)
        session.add(account)
        await session.flush()
        assert account.id is not None
        return account.id

    typer.echo(f"account {run_in_session(work)} created")


@app.command("create-partner")
def create_partner(name: str) -> None:
    async def work(session: AsyncSession) -> int:
        partner = Partner(name=name)
        session.add(partner)
        await session.flush()
        assert partner.id is not None
        return partner.id

    typer.echo(f"partner {run_in_session(work)} created")


@app.command("grant-partner")
def grant_partner(partner_id: int, account_id: int) -> None:
    """Let a partner see an account."""

    async def work(session: AsyncSession) -> bool:
        return await AccountRepository(session, Scope.system("cli grant-partner")).grant_partner(
            partner_id, account_id
        )

    if not run_in_session(work):
        raise typer.BadParameter(f"no account {account_id}")
    typer.echo(f"partner {partner_id} may see account {account_id}")


@app.command("create-api-key")
def create_api_key(
    kind: Annotated[PrincipalKind, typer.Option(help="who the key acts for")],
    name: Annotated[str, typer.Option(help="a label to recognise the key by")],
    account_id: Annotated[int | None, typer.Option(help="for member keys")] = None,
    partner_id: Annotated[int | None, typer.Option(help="for partner keys")] = None,
) -> None:
    """Create a key. It is printed once; only its hash is stored."""

    async def work(session: AsyncSession) -> str:
        _, raw = await auth.create_api_key(
            session, kind=kind, name=name, account_id=account_id, partner_id=partner_id
        )
        return raw

    try:
        typer.echo(run_in_session(work))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


@app.command("revoke-api-key")
def revoke_api_key(prefix: Annotated[str, typer.Argument(help="the 12 characters after 'bk_'")]) -> None:
    run_in_session(lambda session: auth.revoke_api_key(session, prefix))
    typer.echo(f"key {prefix} revoked")


@app.command("audit-log")
def audit_log(
    account_id: Annotated[
        int,
        typer.Option(help="an account's trail; by default the operator's (every API key made or revoked)"),
    ] = audit.OPERATOR_TRAIL,
    first: Annotated[int, typer.Option(help="how many entries, newest first", min=1, max=MAX_PAGE_SIZE)] = 20,
) -> None:
    """Print an audit trail as JSON lines, newest first, with the domain's field names."""

    async def read(session: AsyncSession) -> list[audit.AuditEntry]:
        return (
            await audit.audit_log(
                session, Scope.system("the operator reads any trail"), account_id, first=first
            )
        ).items

    for entry in run_in_session(read):
        typer.echo(json.dumps(dataclasses.asdict(entry), default=str))


@app.command("load-fx")
def load_fx(source: Annotated[str, typer.Argument(help="an ECB reference-rate XML file or URL")]) -> None:
    count = run_in_session(lambda session: fx.load_file_or_url(session, source))
    typer.echo(f"{count} rates added or changed")


@app.command("seed-demo")
def seed_demo() -> None:
    """Create the demo account, partner and keys (once), and print the keys."""
    seed_with(Settings(), fresh_stripe=False)


def seed_with(settings: Settings, *, fresh_stripe: bool) -> None:
    async def work(factory: SessionFactory) -> tuple[str, str]:
        async with unit_of_work(factory) as session:
            seeded = await demo.seed(session)
            member, _ = await demo.ensure_key(
                session, read_key("demo-api-key"), kind=PrincipalKind.MEMBER, account_id=seeded.account.id
            )
            partner, _ = await demo.ensure_key(
                session,
                read_key("demo-partner-api-key"),
                kind=PrincipalKind.PARTNER,
                partner_id=seeded.partner.id,
            )
        if settings.stripe_secret_key:
            # After the seed committed: linking calls Stripe, with no transaction open.
            assert seeded.account.id is not None
            gateway = StripeGateway.from_settings(settings)
            await demo.link_card(factory, gateway, seeded.account.id, fresh_stripe=fresh_stripe)
        return member, partner

    member, partner = run_with_database(work)
    write_key("demo-api-key", member)
    write_key("demo-partner-api-key", partner)
    typer.echo(f"Demo account API key:  {member}   (also in var/demo-api-key)")
    typer.echo(f"Demo partner API key:  {partner}   (also in var/demo-partner-api-key)")


def read_key(name: str) -> str | None:
    path = VAR_DIR / name
    return path.read_text(encoding="utf-8").strip() if path.exists() else None


def write_key(name: str, key: str) -> None:
    VAR_DIR.mkdir(exist_ok=True)
    path = VAR_DIR / name
    path.write_text(key + "\n", encoding="utf-8")
    path.chmod(0o600)


@app.command("export-schema")
def export_schema(path: Annotated[Path, typer.Argument()] = ROOT / "schema.graphql") -> None:
    """Write the GraphQL SDL (committed; a test fails when it drifts from the code)."""
    from root.schema import sdl

    path.write_text(sdl(), encoding="utf-8")
    typer.echo(f"wrote {path}")


@app.command()
def reconcile(
    minutes: Annotated[int, typer.Option(help="settle top-ups pending for longer than this")] = 10,
) -> None:
    """Re-check top-ups still pending against Stripe and settle each exactly once, now (every worker also
    does this every RECONCILE_INTERVAL_SECONDS)."""
    settings = Settings()

    async def main() -> reconciliation.ReconcileReport:
        engine = engine_from_settings(settings)
        # With Redis, subscribers hear what it settles from it.
        stop_publishing = live_events.publish_commits(settings)
        try:
            gateway = StripeGateway.from_settings(settings)
            return await reconciliation.reconcile(
                session_factory(engine), gateway, pending_for=timedelta(minutes=minutes)
            )
        finally:
            await stop_publishing()
            await engine.dispose()

    typer.echo(asyncio.run(main()))


@app.command()
def worker() -> None:
    """Run the worker alone: auto-recharge with periodic reconciliation, and outgoing webhook delivery beside it
    (several may share one PostgreSQL)."""
    settings = Settings()

    async def main() -> None:
        engine = engine_from_settings(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        # With Redis, subscribers hear what it commits from it.
        stop_publishing = live_events.publish_commits(settings)
        try:
            await worker_loops.run(
                session_factory(engine),
                StripeGateway.from_settings(settings),
                stop_event=stop,
                settings=settings,
            )
        finally:
            await stop_publishing()
            await engine.dispose()

    asyncio.run(main())


@app.command()
def serve() -> None:
    """Serve the gateway (no migration, no seeding)."""
    serve_with(Settings())


def serve_with(settings: Settings) -> None:
    from server import create_app

    # The lifespan checks too (for any other server); here an operator gets the list, not a traceback.
    try:
        asyncio.run(production.refuse_if_unsafe(settings))
    except production.UnsafeProduction as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    trusted_proxies = settings.forwarded_allow_ips
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        # Logging stays ours (structlog); each request is logged by the app with its id, not by uvicorn.
        log_config=None,
        access_log=False,
        # X-Forwarded-For names the client only when a proxy the settings trust sent it.
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=trusted_proxies or None,
        # SIGTERM: stop accepting, give requests in flight this long, then run the lifespan's shutdown.
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )


def exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """Unwind like Ctrl-C does, so `finally` blocks (the Stripe stand-in's) run before the process ends.

    uvicorn shuts down gracefully on SIGTERM and then raises the signal again with the handler it found:
    without this one, that is the default handler, which ends the process on the spot.
    """
    raise SystemExit(128 + signum)


@app.command()
def dev() -> None:
    """`make run`: migrate a local database, seed the demo, and serve with GraphiQL.

    Without STRIPE_SECRET_KEY a Stripe stand-in (localstripe) runs beside the gateway, with its webhooks
    delivered to it, so Add funds works on a machine with no keys and no internet.
    """
    signal.signal(signal.SIGTERM, exit_on_signal)
    migrate()
    settings = Settings()
    with ExitStack() as stack:
        fresh_stripe = not settings.stripe_secret_key
        if fresh_stripe:
            url = stack.enter_context(stripe_standin.running())
            settings = settings.model_copy(
                update={
                    "stripe_secret_key": stripe_standin.STRIPE_KEY,
                    "stripe_api_base": url,
                    "stripe_webhook_secret": stripe_standin.WEBHOOK_SECRET,
                }
            )
            webhook_url = f"http://{settings.host}:{settings.port}/webhooks/stripe"
            asyncio.run(stripe_standin.LocalStripe(url).deliver_webhooks_to(webhook_url, name="dev"))
            typer.echo(f"Stripe stand-in (localstripe) at {url}, webhooks to {webhook_url}")
        seed_with(settings, fresh_stripe=fresh_stripe)
        typer.echo(f"GraphiQL: http://{settings.host}:{settings.port}/graphql  (the demo key is pre-filled)")
        serve_with(settings)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUTF8", "1")
    app()
