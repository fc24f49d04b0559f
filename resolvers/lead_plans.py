"""Lead plan mutations: partners and admins, for the accounts they can see.

Not scoped to one account up front: the service finds the account (or the plan's account) through the
caller's scope, so a foreign one answers LeadPlanNotFoundError like a missing one.
"""

from collections.abc import Awaitable, Callable

import strawberry
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.keys.service import Principal
from billing.lead_plans import service as lead_plans
from models import LeadPlanSubscription
from resolvers.accounts import visible_account
from resolvers.mutation import answered
from schema.context import Info
from schema.lead_plans import (
    LEAD_PLAN_ERRORS,
    ChangeLeadPlanInput,
    CreateLeadPlanInput,
    LeadPlan,
    LeadPlanPayload,
    LeadPlanSuccess,
)
from schema.node import from_global_id

# A service call that changes one lead plan, found by id through the caller's scope.
Change = Callable[[AsyncSession, Principal, int], Awaitable[LeadPlanSubscription]]


async def _plan_payload(
    info: Info, change: Callable[[AsyncSession, Principal], Awaitable[LeadPlanSubscription]]
) -> LeadPlanPayload:
    async def work() -> LeadPlanSuccess:
        async with info.context.atomic() as session:
            plan = await change(session, info.context.principal)
        account = await visible_account(info, plan.account_id)
        return LeadPlanSuccess(lead_plan=LeadPlan.from_model(plan, account.country))

    return await answered(LEAD_PLAN_ERRORS, None, work)


async def _changed(info: Info, input: ChangeLeadPlanInput, change: Change) -> LeadPlanPayload:
    plan_id = from_global_id(input.lead_plan_id, "LeadPlan", "leadPlanId")
    return await _plan_payload(info, lambda session, principal: change(session, principal, plan_id))


@strawberry.type
class LeadPlanMutation:
    @strawberry.mutation(description="Partners and admins: a new active lead plan for an account.")
    async def create_lead_plan(self, info: Info, input: CreateLeadPlanInput) -> LeadPlanPayload:
        account_id = from_global_id(input.account_id, "Account", "accountId")
        plan = input.to_domain()
        return await _plan_payload(
            info, lambda session, principal: lead_plans.create_lead_plan(session, principal, account_id, plan)
        )

    @strawberry.mutation
    async def pause_lead_plan(self, info: Info, input: ChangeLeadPlanInput) -> LeadPlanPayload:
        return await _changed(info, input, lead_plans.pause_lead_plan)

    @strawberry.mutation
    async def resume_lead_plan(self, info: Info, input: ChangeLeadPlanInput) -> LeadPlanPayload:
        return await _changed(info, input, lead_plans.resume_lead_plan)

    @strawberry.mutation
    async def cancel_lead_plan(self, info: Info, input: ChangeLeadPlanInput) -> LeadPlanPayload:
        return await _changed(info, input, lead_plans.cancel_lead_plan)
