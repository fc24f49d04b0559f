"""Lead plan subscriptions, managed by partners and admins for the accounts they can see.

Status moves: active -> paused -> active (resume), and active or paused -> canceled, which is final.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlmodel.ext.asyncio.session import AsyncSession

from billing import money
from billing.accounts import service as accounts
from billing.errors import DomainError, NotFound, as_named_here
from billing.events import service as events
from billing.keys.service import Principal
from billing.lead_plans.repository import LeadPlanRepository
from billing.scope import Scope
from models import LeadPlanStatus, LeadPlanSubscription
from models.types import utcnow

MAX_NAME_LENGTH = 200


class LeadPlanManagementDenied(DomainError):
    """Only partners and admins manage lead plans; an account's own people only see them."""


class InvalidLeadPlan(DomainError):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems  # (field as LeadPlanInput names it, message)
        super().__init__(self.describe(as_named_here))

    def describe(self, field_name: Callable[[str], str]) -> str:
        """The message for a person, naming each field as `field_name` spells it."""
        return "; ".join(f"{field_name(name)}: {message}" for name, message in self.problems)


class LeadPlanStatusConflict(DomainError):
    pass


@dataclass(frozen=True)
class LeadPlanInput:
    """Amounts in the account's billing currency, which is the plan's currency too."""

    name: str
    monthly_budget: Decimal | str
    price_per_lead: Decimal | str


async def create_lead_plan(
    session: AsyncSession, principal: Principal, account_id: int, request: LeadPlanInput
) -> LeadPlanSubscription:
    _check_may_manage(principal)
    account = await accounts.get_visible(session, principal, account_id)
    name = request.name.strip()
    problems: list[tuple[str, str]] = []
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        problems.append(("name", f"must be 1 to {MAX_NAME_LENGTH} characters"))
    amounts: dict[str, int] = {}
    for field, value in (
        ("monthly_budget", request.monthly_budget),
        ("price_per_lead", request.price_per_lead),
    ):
        try:
            amounts[field] = money.to_minor(value, account.currency, field=field)
        except money.InvalidAmount as error:
            problems.append((field, error.problem))
            continue
        if amounts[field] <= 0:
            problems.append((field, "must be more than zero"))
    if problems:
        raise InvalidLeadPlan(problems)
    plan = LeadPlanSubscription(
        account_id=account_id,
        name=name,
        monthly_budget_minor=amounts["monthly_budget"],
        price_per_lead_minor=amounts["price_per_lead"],
        currency=account.currency,
    )
    await LeadPlanRepository(session, Scope.of(principal)).add(plan)
    _record_change(session, plan, None)
    return plan


async def pause_lead_plan(
    session: AsyncSession, principal: Principal, plan_id: int, *, now: datetime | None = None
) -> LeadPlanSubscription:
    plan = await _plan_to_change(
        session, principal, plan_id, allowed_from={LeadPlanStatus.ACTIVE}, verb="paused"
    )
    before = events.snapshot(plan, events.LeadPlanChanged.FIELDS)
    plan.status = LeadPlanStatus.PAUSED
    plan.paused_at = now or utcnow()
    await session.flush()
    _record_change(session, plan, before)
    return plan


async def resume_lead_plan(session: AsyncSession, principal: Principal, plan_id: int) -> LeadPlanSubscription:
    plan = await _plan_to_change(
        session, principal, plan_id, allowed_from={LeadPlanStatus.PAUSED}, verb="resumed"
    )
    before = events.snapshot(plan, events.LeadPlanChanged.FIELDS)
    plan.status = LeadPlanStatus.ACTIVE
    plan.paused_at = None
    await session.flush()
    _record_change(session, plan, before)
    return plan


async def cancel_lead_plan(
    session: AsyncSession, principal: Principal, plan_id: int, *, now: datetime | None = None
) -> LeadPlanSubscription:
    plan = await _plan_to_change(
        session,
        principal,
        plan_id,
        allowed_from={LeadPlanStatus.ACTIVE, LeadPlanStatus.PAUSED},
        verb="canceled",
    )
    before = events.snapshot(plan, events.LeadPlanChanged.FIELDS)
    plan.status = LeadPlanStatus.CANCELED
    plan.canceled_at = now or utcnow()
    await session.flush()
    _record_change(session, plan, before)
    return plan


def _record_change(session: AsyncSession, plan: LeadPlanSubscription, before: events.Snapshot | None) -> None:
    assert plan.id is not None
    after = events.snapshot(plan, events.LeadPlanChanged.FIELDS)
    events.record(session, events.LeadPlanChanged(plan.account_id, plan.id, before, after))


def _check_may_manage(principal: Principal) -> None:
    if not principal.may_manage_lead_plans:
        raise LeadPlanManagementDenied("only partners and admins manage lead plans")


async def _plan_to_change(
    session: AsyncSession, principal: Principal, plan_id: int, *, allowed_from: set[LeadPlanStatus], verb: str
) -> LeadPlanSubscription:
    _check_may_manage(principal)
    plan = await LeadPlanRepository(session, Scope.of(principal)).locked(plan_id)
    if plan is None:
        raise NotFound("lead plan not found")
    if plan.status not in allowed_from:
        raise LeadPlanStatusConflict(f"a {plan.status} lead plan cannot be {verb}")
    return plan
