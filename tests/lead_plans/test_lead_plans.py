"""Lead plans: partners and admins manage them for the accounts they can see; status moves are checked."""

from decimal import Decimal

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.errors import NotFound
from billing.keys.service import Principal
from billing.lead_plans.service import (
    InvalidLeadPlan,
    LeadPlanInput,
    LeadPlanManagementDenied,
    LeadPlanStatusConflict,
    cancel_lead_plan,
    create_lead_plan,
    pause_lead_plan,
    resume_lead_plan,
)
from models import LeadPlanStatus, PrincipalKind
from tests.support.factories import create_account, create_partner

PLAN = LeadPlanInput(
    name="  Solar installs  ", monthly_budget=Decimal("3000.00"), price_per_lead=Decimal("25.00")
)


async def test_a_partner_runs_a_plan_through_its_life(session: AsyncSession) -> None:
    account = await create_account(session, currency="EUR")
    partner = await create_partner(session, account)
    principal = Principal(kind=PrincipalKind.PARTNER, api_key_id=0, partner_id=partner.id)
    assert account.id is not None

    plan = await create_lead_plan(session, principal, account.id, PLAN)
    assert (plan.name, plan.monthly_budget_minor, plan.price_per_lead_minor) == (
        "Solar installs",
        300_000,
        2_500,
    )
    assert (plan.currency, plan.status) == ("EUR", LeadPlanStatus.ACTIVE)
    assert plan.id is not None
    assert (await pause_lead_plan(session, principal, plan.id)).status == LeadPlanStatus.PAUSED
    assert (await resume_lead_plan(session, principal, plan.id)).status == LeadPlanStatus.ACTIVE
    canceled = await cancel_lead_plan(session, principal, plan.id)
    assert canceled.status == LeadPlanStatus.CANCELED and canceled.canceled_at is not None
    with pytest.raises(LeadPlanStatusConflict):
        await resume_lead_plan(session, principal, plan.id)


async def test_a_member_may_not_manage_plans(session: AsyncSession) -> None:
    account = await create_account(session)
    assert account.id is not None
    member = Principal(kind=PrincipalKind.MEMBER, api_key_id=0, account_id=account.id)
    with pytest.raises(LeadPlanManagementDenied):
        await create_lead_plan(session, member, account.id, PLAN)


async def test_a_partner_cannot_touch_another_partners_account(session: AsyncSession) -> None:
    mine, theirs = await create_account(session), await create_account(session)
    partner, other = await create_partner(session, mine), await create_partner(session, theirs)
    principal = Principal(kind=PrincipalKind.PARTNER, api_key_id=0, partner_id=partner.id)
    admin = Principal(kind=PrincipalKind.ADMIN, api_key_id=0)
    assert theirs.id is not None and other.id is not None
    with pytest.raises(NotFound):
        await create_lead_plan(session, principal, theirs.id, PLAN)
    foreign = await create_lead_plan(session, admin, theirs.id, PLAN)
    assert foreign.id is not None
    with pytest.raises(NotFound):
        await pause_lead_plan(session, principal, foreign.id)


async def test_invalid_input_names_each_field(session: AsyncSession) -> None:
    account = await create_account(session, currency="JPY")
    admin = Principal(kind=PrincipalKind.ADMIN, api_key_id=0)
    assert account.id is not None
    bad = LeadPlanInput(name=" ", monthly_budget=Decimal("0"), price_per_lead=Decimal("2.50"))
    with pytest.raises(InvalidLeadPlan) as refused:
        await create_lead_plan(session, admin, account.id, bad)
    assert [name for name, _ in refused.value.problems] == ["name", "monthly_budget", "price_per_lead"]
