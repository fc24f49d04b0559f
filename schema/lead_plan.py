"""Lead plan mutations (partners and admins): create, pause, resume and cancel an account's lead plans."""

from typing import Annotated

import strawberry

from billing import lead_plans
from billing.errors import NotFound
from schema.errors import DeclaredErrors, Error, on, with_message
from schema.lead_plan_subscription import LeadPlan
from schema.payments import FieldError
from schema.permissions import PermissionDeniedError


@strawberry.input
class CreateLeadPlanInput:
    account_id: strawberry.ID
    name: str
    monthly_budget: str = strawberry.field(description="Exact decimal in the account's billing currency.")
    price_per_lead: str = strawberry.field(description="Exact decimal in the account's billing currency.")

    def to_domain(self) -> lead_plans.LeadPlanInput:
        return lead_plans.LeadPlanInput(
            name=self.name, monthly_budget=self.monthly_budget, price_per_lead=self.price_per_lead
        )


@strawberry.input
class ChangeLeadPlanInput:
    lead_plan_id: strawberry.ID


@strawberry.type
class LeadPlanSuccess:
    lead_plan: LeadPlan


@strawberry.type
class InvalidLeadPlanError(Error):
    field_errors: list[FieldError]


@strawberry.type(description="The plan's status does not allow this (a canceled plan stays canceled).")
class LeadPlanStatusConflictError(Error):
    pass


@strawberry.type
class LeadPlanNotFoundError(Error):
    pass


LeadPlanPayload = Annotated[
    LeadPlanSuccess
    | InvalidLeadPlanError
    | LeadPlanStatusConflictError
    | LeadPlanNotFoundError
    | PermissionDeniedError,
    strawberry.union("LeadPlanPayload"),
]


def invalid_lead_plan(error: lead_plans.InvalidLeadPlan, _where: object) -> InvalidLeadPlanError:
    """Every problem of the input at once, each naming its field (a bad amount included: the service reports
    it as a problem of `monthlyBudget` or `pricePerLead`)."""
    fields = [FieldError(field=name, message=why) for name, why in error.problems]
    return InvalidLeadPlanError(message=error.message, field_errors=fields)


# Not scoped to one account up front: the service finds the plan (or the account) through the caller's scope.
LEAD_PLAN_ERRORS: DeclaredErrors[LeadPlanPayload, None] = DeclaredErrors(
    on(lead_plans.InvalidLeadPlan, invalid_lead_plan),
    on(lead_plans.LeadPlanStatusConflict, with_message(LeadPlanStatusConflictError)),
    on(lead_plans.LeadPlanManagementDenied, with_message(PermissionDeniedError)),
    on(NotFound, with_message(LeadPlanNotFoundError)),
)
