"""Saving auto-recharge settings: the typed refusals, and what saving does to the engine's state."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.auto_recharge.service import (
    AutoRechargeInput,
    InvalidThreshold,
    MonthlyLimitBelowAmount,
    NoActiveLeadPlan,
    save_settings,
)
from billing.config import Settings
from billing.errors import DomainError, NotFound
from billing.keys.service import Principal
from billing.topups.service import (
    AmountOutOfRange,
    CompanyIncomplete,
    PaymentMethodRequired,
    UnknownPaymentMethod,
)
from models import Account, AutoRechargeSettings, Company, PrincipalKind, Recharge
from tests.support.factories import create_account, create_company, create_payment_method
from tests.support.usage_factories import create_lead_plan

LIMITS = Settings(min_top_up_minor=500, max_top_up_minor=1_000_000)
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def member_of(account: Account) -> Principal:
    return Principal(kind=PrincipalKind.MEMBER, api_key_id=0, account_id=account.id)


def settings_input(**overrides: object) -> AutoRechargeInput:
    fields: dict[str, object] = {
        "enabled": True,
        "threshold": Decimal("50.00"),
        "amount": Decimal("100.00"),
        "monthly_limit": Decimal("500.00"),
        "payment_method_id": None,
    }
    fields.update(overrides)
    return AutoRechargeInput(**fields)  # type: ignore[arg-type]


async def ready(session: AsyncSession) -> Account:
    account = await create_account(session)
    await create_company(session, account)
    await create_lead_plan(session, account)
    await create_payment_method(session, account)
    return account


async def save(session: AsyncSession, account: Account, **overrides: object) -> None:
    assert account.id is not None
    await save_settings(
        session, member_of(account), account.id, settings_input(**overrides), limits=LIMITS, now=NOW
    )


async def test_refused_without_an_active_lead_plan(session: AsyncSession) -> None:
    account = await create_account(session)
    await create_company(session, account)
    await create_payment_method(session, account)
    await create_lead_plan(session, account, status="paused")
    with pytest.raises(NoActiveLeadPlan):
        await save(session, account)


async def test_refused_with_an_incomplete_company(session: AsyncSession) -> None:
    account = await ready(session)
    company = await session.get(Company, account.id)
    assert company is not None
    company.phone = None
    with pytest.raises(CompanyIncomplete) as refused:
        await save(session, account)
    assert refused.value.missing_fields == ["phone"]


async def test_refused_with_another_accounts_card(session: AsyncSession) -> None:
    account, other = await ready(session), await create_account(session)
    foreign = await create_payment_method(session, other)
    with pytest.raises(UnknownPaymentMethod):
        await save(session, account, payment_method_id=foreign.id)


async def test_refused_without_a_card(session: AsyncSession) -> None:
    account = await create_account(session)
    await create_company(session, account)
    await create_lead_plan(session, account)
    with pytest.raises(PaymentMethodRequired):
        await save(session, account)


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"threshold": Decimal("-0.01")}, InvalidThreshold),
        ({"amount": Decimal("4.99")}, AmountOutOfRange),
        ({"amount": Decimal("10000.01"), "monthly_limit": Decimal("20000")}, AmountOutOfRange),
        ({"monthly_limit": Decimal("99.99")}, MonthlyLimitBelowAmount),
    ],
)
async def test_refused_amounts(
    session: AsyncSession, overrides: dict[str, object], error: type[DomainError]
) -> None:
    account = await ready(session)
    with pytest.raises(error):
        await save(session, account, **overrides)


async def test_another_accounts_settings_read_as_not_found(session: AsyncSession) -> None:
    account, other = await ready(session), await ready(session)
    assert other.id is not None
    with pytest.raises(NotFound):
        await save_settings(session, member_of(account), other.id, settings_input(), limits=LIMITS, now=NOW)


async def test_saving_below_the_threshold_schedules_at_once_and_clears_a_suspension(
    session: AsyncSession,
) -> None:
    account = await ready(session)
    await save(session, account)
    stored = await session.get(AutoRechargeSettings, account.id)
    assert stored is not None and stored.enabled and stored.amount_minor == 10_000
    assert [r.amount_minor for r in (await session.exec(select(Recharge))).all()] == [10_000]

    stored.suspended_reason, stored.consecutive_failures = "3 failed attempts in a row", 3
    await save(session, account, enabled=False)
    assert stored.suspended_reason is None and stored.consecutive_failures == 0 and not stored.enabled
