"""Lead plan mutations (partners and admins): create, pause, resume and cancel an account's lead plans."""

from typing import Annotated

import strawberry

from billing import lead_plans
from billing.errors import NotFound
from billing.money import InvalidAmount
from schema.errors import Error
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

EXPECTED_ERRORS = (
    lead_plans.InvalidLeadPlan,
    lead_plans.LeadPlanStatusConflict,
    lead_plans.LeadPlanManagementDenied,
    NotFound,
    InvalidAmount,
)


def to_error(error: Exception) -> Error:
    match error:
        case lead_plans.InvalidLeadPlan():
            fields = [FieldError(field=name, message=why) for name, why in error.problems]
            return InvalidLeadPlanError(message=error.message, field_errors=fields)
        case lead_plans.LeadPlanStatusConflict():
            return LeadPlanStatusConflictError(message=error.message)
        case lead_plans.LeadPlanManagementDenied():
            return PermissionDeniedError(message=error.message)
        case NotFound():
            return LeadPlanNotFoundError(message=error.message)
    raise error
