"""Lead plan subscriptions: the budgets lead delivery counts against."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class LeadPlanStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELED = "canceled"


class LeadPlanSubscription(SQLModel, table=True):
    __tablename__ = "lead_plan_subscription"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=200)
    monthly_budget_minor: int = Field(sa_type=BigInteger)
    price_per_lead_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    status: str = Field(default=LeadPlanStatus.ACTIVE, max_length=16)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    paused_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    canceled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class LeadPlanRollup(SQLModel, table=True):
    """One row per lead plan and calendar month (in its account's time zone): what the leads reported against
    the plan cost, kept current by the transaction recording them (the plan's budget is compared with it)."""

    __tablename__ = "lead_plan_rollup"

    lead_plan_id: int = Field(foreign_key="lead_plan_subscription.id", primary_key=True, ondelete="CASCADE")
    month: str = Field(primary_key=True, max_length=7, description="YYYY-MM")
    # The plan's account: whose data a write here changes (scopes, data versions), as on every account's row.
    account_id: int = Field(foreign_key="account.id", ondelete="CASCADE")
    spent_minor: int = Field(default=0, sa_type=BigInteger)
