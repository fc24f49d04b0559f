"""Lead plan subscriptions: what lead delivery counts against, and what auto-recharge requires."""

from datetime import datetime

import strawberry

from models import LeadPlanStatus, LeadPlanSubscription
from schema.money import Money
from schema.node import Node, to_global_id

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
    def from_model(cls, row: LeadPlanSubscription, country: str) -> "LeadPlan":
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
