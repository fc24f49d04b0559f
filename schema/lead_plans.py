"""Lead plans: the subscription type, its budget, and the lead plan mutations' inputs and payloads."""

from datetime import datetime
from typing import Annotated

import strawberry

from billing.errors import NotFound
from billing.lead_plans import service as lead_plans
from billing.lead_plans.repository import LeadPlanRow
from models import LeadPlanStatus, LeadPlanSubscription
from schema.company import FieldError
from schema.errors import DeclaredErrors, Error, on, with_message
from schema.money import Money
from schema.node import Node, to_global_id
from schema.permissions import PermissionDeniedError

strawberry.enum(LeadPlanStatus)


@strawberry.type
class LeadPlan(Node):
    name: str
    monthly_budget: Money
    price_per_lead: Money
    status: LeadPlanStatus
    started_at: datetime
    paused_at: datetime | None
    canceled_at: datetime | None

    @classmethod
    def from_model(cls, row: LeadPlanSubscription | LeadPlanRow, country: str) -> "LeadPlan":
        assert row.id is not None
        return cls(
            id=to_global_id("LeadPlan", row.id),
            name=row.name,
            monthly_budget=Money.of(row.monthly_budget_minor, row.currency, country),
            price_per_lead=Money.of(row.price_per_lead_minor, row.currency, country),
            status=LeadPlanStatus(row.status),
            started_at=row.started_at,
            paused_at=row.paused_at,
            canceled_at=row.canceled_at,
        )


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


# Domain field names (lead_plans.LeadPlanInput) as the client sees them in CreateLeadPlanInput.
_LEAD_PLAN_FIELD_PATHS = {
    "name": "name",
    "monthly_budget": "monthlyBudget",
    "price_per_lead": "pricePerLead",
}


def lead_plan_field_path(name: str) -> str:
    return _LEAD_PLAN_FIELD_PATHS.get(name, name)


def invalid_lead_plan(error: lead_plans.InvalidLeadPlan, _where: object) -> InvalidLeadPlanError:
    """Every problem of the input at once, each naming its field (a bad amount included: the service reports
    it as a problem of `monthly_budget` or `price_per_lead`)."""
    fields = [FieldError(field=lead_plan_field_path(name), message=why) for name, why in error.problems]
    return InvalidLeadPlanError(message=error.describe(lead_plan_field_path), field_errors=fields)


# Not scoped to one account up front: the service finds the plan (or the account) through the caller's scope.
LEAD_PLAN_ERRORS: DeclaredErrors[LeadPlanPayload, None] = DeclaredErrors(
    on(lead_plans.InvalidLeadPlan, invalid_lead_plan),
    on(lead_plans.LeadPlanStatusConflict, with_message(LeadPlanStatusConflictError)),
    on(lead_plans.LeadPlanManagementDenied, with_message(PermissionDeniedError)),
    on(NotFound, with_message(LeadPlanNotFoundError)),
)
