"""ENVIRONMENT=production refuses to start unsafely, listing every problem in one message."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import demo, production
from billing.config import DEVELOPMENT_WEBHOOK_SECRET, Environment, Settings
from billing.db import SessionFactory
from billing.keys import service as auth
from models import Partner, PrincipalKind
from tests.support.factories import create_account, member_key
from tests.support.gateway import open_gateway
from tests.support.graphql_client import post_graphql

ROOT = Path(__file__).resolve().parents[2]

SAFE: dict[str, Any] = {
    "environment": Environment.PRODUCTION,
    "database_url": "postgresql+asyncpg://billing@db.internal/billing",
    "stripe_secret_key": "sk_live_not_a_real_key",
    "stripe_webhook_secret": "whsec_from_the_dashboard",
    "embedded_worker": False,
}


def production_settings(**overrides: Any) -> Settings:
    return Settings(**(SAFE | overrides))


def test_safe_settings_have_no_problems() -> None:
    assert production.settings_problems(production_settings()) == []


def test_every_unsafe_setting_is_a_problem_of_its_own() -> None:
    unsafe = production_settings(
        database_url="sqlite+aiosqlite:///var/billing.db",
        stripe_secret_key="sk_test_123",
        stripe_api_base="http://127.0.0.1:8420",
        stripe_webhook_secret=DEVELOPMENT_WEBHOOK_SECRET,
        graphiql=True,
        introspection=True,
    )
    problems = production.settings_problems(unsafe)
    named = [
        "SQLite",
        "test-mode key",
        "STRIPE_API_BASE",
        "public development secret",
        "GRAPHIQL",
        "INTROSPECTION",
    ]
    assert len(problems) == len(named)
    for problem, name in zip(problems, named, strict=True):
        assert name in problem


def test_sqlite_and_a_test_key_are_allowed_when_said_so() -> None:
    allowed = production_settings(
        database_url="sqlite+aiosqlite:///var/billing.db",
        stripe_secret_key="sk_test_123",
        allow_sqlite_in_production=True,
        allow_stripe_test_key_in_production=True,
    )
    assert production.settings_problems(allowed) == []


def test_missing_stripe_secrets_are_problems() -> None:
    problems = production.settings_problems(production_settings(stripe_webhook_secret=None))
    assert len(problems) == 1 and "STRIPE_WEBHOOK_SECRET is not set" in problems[0]
    problems = production.settings_problems(production_settings(stripe_secret_key=None))
    assert len(problems) == 1 and "STRIPE_SECRET_KEY is not set" in problems[0]


def test_debug_features_explicitly_off_are_fine() -> None:
    assert production.settings_problems(production_settings(graphiql=False, introspection=False)) == []


async def test_active_demo_keys_are_refused_until_revoked(
    session: AsyncSession, session_factory: SessionFactory
) -> None:
    await production.refuse_if_unsafe(production_settings(), session_factory)
    account = await create_account(session, name=demo.DEMO_ACCOUNT)
    key = await member_key(session, account)
    ordinary = await member_key(session, await create_account(session))
    await session.commit()

    with pytest.raises(production.UnsafeProduction) as refused:
        await production.refuse_if_unsafe(production_settings(), session_factory)
    assert len(refused.value.problems) == 1
    assert key[3:15] in refused.value.problems[0] and ordinary[3:15] not in refused.value.problems[0]

    await auth.revoke_api_key(session, key[3:15])
    await session.commit()
    await production.refuse_if_unsafe(production_settings(), session_factory)


async def test_the_demo_partners_keys_count_too(
    session: AsyncSession, session_factory: SessionFactory
) -> None:
    partner = Partner(name=demo.DEMO_PARTNER)
    session.add(partner)
    await session.flush()
    key, _ = await auth.create_api_key(
        session, kind=PrincipalKind.PARTNER, name="demo", partner_id=partner.id
    )
    await session.commit()
    with pytest.raises(production.UnsafeProduction) as refused:
        await production.refuse_if_unsafe(production_settings(), session_factory)
    assert key.prefix in refused.value.problems[0]


async def test_the_app_does_not_start_with_all_problems_in_one_message(
    session_factory: SessionFactory,
) -> None:
    settings = production_settings(stripe_secret_key="sk_test_1", graphiql=True)
    with pytest.raises(production.UnsafeProduction) as refused:
        async with open_gateway(settings, session_factory):
            pass
    message = str(refused.value)
    assert "test-mode key" in message and "GRAPHIQL=true" in message
    assert message.count("\n  - ") == 2


def test_cli_serve_exits_non_zero_with_one_message(tmp_path: Path) -> None:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("STRIPE_", "DATABASE_", "ALLOW_", "GRAPHIQL", "INTROSPECTION"))
    }
    environment |= {
        "ENVIRONMENT": "production",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'billing.db'}",
        "STRIPE_SECRET_KEY": "sk_test_123",
        "BILLING_VAR_DIR": str(tmp_path),
    }
    finished = subprocess.run(
        [sys.executable, "-m", "cli", "serve"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 1, finished.stderr
    assert finished.stderr.count("ENVIRONMENT=production refuses to start") == 1
    for problem in ("DATABASE_URL is SQLite", "test-mode key", "STRIPE_WEBHOOK_SECRET is not set"):
        assert problem in finished.stderr
    assert "Traceback" not in finished.stderr
    assert "Uvicorn running" not in finished.stderr


# A misspelt field, a misspelt enum value inline, and the same in a variable (coerced apart from validation).
MISSPELT: list[tuple[str, dict[str, Any]]] = [
    ("{ account { nme } }", {}),
    ("{ account { transactions(first: 1, filter: {kinds: [TOP_UPP]}) { edges { cursor } } } }", {}),
    (
        "query ($kinds: [TransactionKind!]) "
        "{ account { transactions(first: 1, filter: {kinds: $kinds}) { edges { cursor } } } }",
        {"kinds": ["TOP_UPP"]},
    ),
]


@pytest.mark.parametrize(
    ("environment", "suggests"), [(Environment.PRODUCTION, False), (Environment.DEVELOPMENT, True)]
)
async def test_production_suggests_no_field_names(
    session: AsyncSession, session_factory: SessionFactory, environment: Environment, suggests: bool
) -> None:
    key = await member_key(session, await create_account(session))
    async with open_gateway(production_settings(environment=environment), session_factory) as client:
        for query, variables in MISSPELT:
            response = await post_graphql(client, key, query, variables)
            messages = [error["message"] for error in response.json()["errors"]]
            assert messages, response.text
            assert any("Did you mean" in message for message in messages) is suggests, messages
