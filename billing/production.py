"""What production refuses to start with: every problem found, in one message (README, "Production settings").

Checked in the gateway's lifespan (so every way of serving it is covered) and before `cli serve` starts
uvicorn (so an operator reads the list, not a traceback).
"""

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import demo
from billing.config import DEVELOPMENT_WEBHOOK_SECRET, Settings
from billing.db import DatabaseBusy, SessionFactory, engine_from_settings, read_session, session_factory
from billing.demo_repository import DemoRepository
from billing.scope import Scope

STRIPE_TEST_KEY_PREFIXES = ("sk_test_", "rk_test_")


class UnsafeProduction(Exception):
    def __init__(self, problems: list[str]) -> None:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"ENVIRONMENT=production refuses to start:\n{listed}\n"
            "See the README, 'Production settings', for what each one needs."
        )
        self.problems = problems


def settings_problems(settings: Settings) -> list[str]:
    problems = []
    if settings.database_url.startswith("sqlite") and not settings.allow_sqlite_in_production:
        problems.append(
            "DATABASE_URL is SQLite (one writer at a time, one machine): use PostgreSQL, "
            "or set ALLOW_SQLITE_IN_PRODUCTION=true"
        )
    key = settings.stripe_secret_key
    if not key:
        problems.append("STRIPE_SECRET_KEY is not set: cards, Add funds and auto-recharge cannot work")
    elif key.startswith(STRIPE_TEST_KEY_PREFIXES) and not settings.allow_stripe_test_key_in_production:
        problems.append(
            "STRIPE_SECRET_KEY is a test-mode key (no real money moves): use a live key, "
            "or set ALLOW_STRIPE_TEST_KEY_IN_PRODUCTION=true"
        )
    if settings.stripe_api_base:
        problems.append("STRIPE_API_BASE points the Stripe SDK away from Stripe: unset it")
    if not settings.stripe_webhook_secret:
        problems.append(
            "STRIPE_WEBHOOK_SECRET is not set: every Stripe webhook would be refused and its event lost"
        )
    elif settings.stripe_webhook_secret == DEVELOPMENT_WEBHOOK_SECRET:
        problems.append(
            "STRIPE_WEBHOOK_SECRET is the public development secret of `make run`: anyone could sign "
            "webhooks; use the endpoint's secret from the Stripe dashboard"
        )
    # Explicitly turned on (production turns both off by default): they hand out the hidden schema.
    for name, value in (("GRAPHIQL", settings.graphiql), ("INTROSPECTION", settings.introspection)):
        if value:
            problems.append(f"{name}=true exposes the schema in production: unset it")
    return problems


async def demo_key_problems(session: AsyncSession) -> list[str]:
    """The seeded demo account's and demo partner's keys still work (their raw keys sit in files under var/)."""
    demo_rows = DemoRepository(session, Scope.system("production checks the demo's keys before it starts"))
    prefixes = await demo_rows.active_key_prefixes(demo.DEMO_ACCOUNT, demo.DEMO_PARTNER)
    if not prefixes:
        return []
    return [
        f"the demo account's API keys are active ({', '.join(prefixes)}): "
        "revoke each with `python -m cli revoke-api-key <prefix>`"
    ]


async def refuse_if_unsafe(settings: Settings, sessions: SessionFactory | None = None) -> None:
    """Raise UnsafeProduction listing every problem; nothing outside production. Without `sessions` the
    database is read through a short-lived engine of its own."""
    if not settings.is_production:
        return
    problems = settings_problems(settings)
    engine = None
    if sessions is None:
        engine = engine_from_settings(settings)
        sessions = session_factory(engine)
    try:
        async with read_session(sessions) as session:
            problems += await demo_key_problems(session)
    except (SQLAlchemyError, DatabaseBusy) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        problems.append(f"the database could not be checked for demo keys: {reason}")
    finally:
        if engine is not None:
            await engine.dispose()
    if problems:
        raise UnsafeProduction(problems)
