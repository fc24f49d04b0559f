"""Factories for usage, lead plan and auto-recharge tests (the shared ones are in tests/support/factories.py)."""

from datetime import datetime, timedelta
from decimal import Decimal
from itertools import count

from sqlmodel.ext.asyncio.session import AsyncSession

from billing.keys.service import Principal
from billing.ledger import service as ledger
from billing.usage.service import UsageEvent, record_usage
from models import (
    Account,
    AutoRechargeSettings,
    LeadPlanSubscription,
    PaymentMethod,
    PrincipalKind,
    TransactionKind,
)
from tests.support.factories import SYSTEM

_sequence = count(1)

REPORTER = Principal(kind=PrincipalKind.USAGE_REPORTER, api_key_id=0)
ADMIN = Principal(kind=PrincipalKind.ADMIN, api_key_id=0)


async def create_lead_plan(
    session: AsyncSession,
    account: Account,
    *,
    status: str = "active",
    monthly_budget_minor: int = 100_000,
    price_per_lead_minor: int = 2_500,
) -> LeadPlanSubscription:
    assert account.id is not None
    plan = LeadPlanSubscription(
        account_id=account.id,
        name=f"Plan {next(_sequence)}",
        monthly_budget_minor=monthly_budget_minor,
        price_per_lead_minor=price_per_lead_minor,
        currency=account.currency,
        status=status,
    )
    session.add(plan)
    await session.flush()
    return plan


async def enable_auto_recharge(
    session: AsyncSession,
    account: Account,
    card: PaymentMethod,
    *,
    threshold_minor: int = 5_000,
    amount_minor: int = 10_000,
    monthly_limit_minor: int = 100_000,
) -> AutoRechargeSettings:
    """Settings written directly (the engine's tests do not need the save checks; test_auto_recharge covers them)."""
    assert account.id is not None
    settings = AutoRechargeSettings(
        account_id=account.id,
        enabled=True,
        threshold_minor=threshold_minor,
        amount_minor=amount_minor,
        monthly_limit_minor=monthly_limit_minor,
        payment_method_id=card.id,
    )
    session.add(settings)
    await session.flush()
    return settings


def lead(
    account: Account, plan: LeadPlanSubscription, at: datetime, *, cost: str = "25.00", key: str = ""
) -> UsageEvent:
    assert account.id is not None and plan.id is not None
    return UsageEvent(
        external_id=key or f"lead-{next(_sequence)}",
        account_id=account.id,
        occurred_at=at,
        category="lead",
        cost=Decimal(cost),
        lead_plan_id=plan.id,
    )


def call(
    account: Account, at: datetime, *, seconds: int = 90, cost: str = "0.45", key: str = ""
) -> UsageEvent:
    assert account.id is not None
    return call_for(account.id, at, seconds=seconds, cost=cost, key=key)


def call_for(
    account_id: int, at: datetime, *, seconds: int = 90, cost: str = "0.45", key: str = ""
) -> UsageEvent:
    return UsageEvent(
        external_id=key or f"call-{next(_sequence)}",
        account_id=account_id,
        occurred_at=at,
        category="call",
        cost=Decimal(cost),
        duration_seconds=seconds,
    )


def ai_request(
    account: Account,
    at: datetime,
    *,
    tokens: tuple[int, int] = (1_200, 300),
    cost: str = "0.03",
    key: str = "",
) -> UsageEvent:
    assert account.id is not None
    return UsageEvent(
        external_id=key or f"ai-{next(_sequence)}",
        account_id=account.id,
        occurred_at=at,
        category="ai_agent",
        cost=Decimal(cost),
        input_tokens=tokens[0],
        output_tokens=tokens[1],
    )


async def spend(session: AsyncSession, account: Account, cost: str, *, at: datetime) -> None:
    """A usage debit (one call ending at `at`), flushed into the test's transaction, where the worker's sessions
    see it.

    Never `session.commit()` here: on SQLite the test's first savepoint is the real transaction (pysqlite
    begins none of its own), so releasing it would commit for good and leak rows into other tests.
    """
    await record_usage(session, REPORTER, [call(account, at - timedelta(minutes=1), cost=cost)], now=at)


async def credit(session: AsyncSession, account: Account, amount_minor: int) -> None:
    """An opening credit (one per account: its idempotency key is fixed)."""
    assert account.id is not None
    await ledger.post(
        session,
        SYSTEM,
        account_id=account.id,
        kind=TransactionKind.ADJUSTMENT,
        amount_minor=amount_minor,
        description="Opening credit",
        idempotency_key="opening",
    )
