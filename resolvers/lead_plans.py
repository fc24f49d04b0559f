"""Lead plan mutations: partners and admins, for the accounts they can see."""

from collections.abc import Awaitable, Callable
from typing import cast

import strawberry
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import lead_plans
from billing.auth import Principal
from models import LeadPlanSubscription
from resolvers.accounts import visible_account
from resolvers.context import Info
from schema.lead_plan import (
    EXPECTED_ERRORS,
    ChangeLeadPlanInput,
    CreateLeadPlanInput,
    LeadPlanPayload,
    LeadPlanSuccess,
    to_error,
)
from schema.lead_plan_subscription import LeadPlan
from schema.node import from_global_id

Change = Callable[[AsyncSession, Principal, int], Awaitable[LeadPlanSubscription]]


async def _run(
    info: Info, change: Callable[[AsyncSession], Awaitable[LeadPlanSubscription]]
) -> LeadPlanPayload:
    try:
        async with info.context.atomic() as session:
            plan = await change(session)
    except EXPECTED_ERRORS as error:
        return cast(LeadPlanPayload, to_error(error))
    account = await visible_account(info, plan.account_id)
    return LeadPlanSuccess(lead_plan=LeadPlan.from_model(plan, account.country))


async def _change(info: Info, input: ChangeLeadPlanInput, change: Change) -> LeadPlanPayload:
    plan_id = from_global_id(input.lead_plan_id, "LeadPlan", "leadPlanId")
    return await _run(info, lambda session: change(session, info.context.principal, plan_id))


@strawberry.type
class LeadPlanMutation:
    @strawberry.mutation(description="Partners and admins: a new active lead plan for an account.")
    async def create_lead_plan(self, info: Info, input: CreateLeadPlanInput) -> LeadPlanPayload:
        account_id = from_global_id(input.account_id, "Account", "accountId")
        return await _run(
            info,
            lambda session: lead_plans.create_lead_plan(
                session, info.context.principal, account_id, input.to_domain()
            ),
        )

    @strawberry.mutation
    async def pause_lead_plan(self, info: Info, input: ChangeLeadPlanInput) -> LeadPlanPayload:
        return await _change(info, input, lambda s, p, plan_id: lead_plans.pause_lead_plan(s, p, plan_id))

    @strawberry.mutation
    async def resume_lead_plan(self, info: Info, input: ChangeLeadPlanInput) -> LeadPlanPayload:
        return await _change(info, input, lead_plans.resume_lead_plan)

    @strawberry.mutation
    async def cancel_lead_plan(self, info: Info, input: ChangeLeadPlanInput) -> LeadPlanPayload:
        return await _change(info, input, lambda s, p, plan_id: lead_plans.cancel_lead_plan(s, p, plan_id))
