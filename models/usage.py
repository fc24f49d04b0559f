"""Usage events as reported by the lead, calling and AI agent services, and their monthly rollups."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class UsageCategory(StrEnum):
    LEAD = "lead"
    CALL = "call"
    AI_AGENT = "ai_agent"


class UsageEvent(SQLModel, table=True):
    __tablename__ = "usage_event"
    __table_args__ = (UniqueConstraint("account_id", "external_id", name="uq_usage_event_external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", ondelete="CASCADE")
    external_id: str = Field(max_length=255)
    category: str = Field(max_length=16)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    cost_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    lead_plan_id: int | None = Field(default=None, foreign_key="lead_plan_subscription.id")
    duration_seconds: int | None = None
    input_tokens: int | None = Field(default=None, sa_type=BigInteger)
    output_tokens: int | None = Field(default=None, sa_type=BigInteger)
    # The ledger debit that carries this event's cost.
    transaction_id: int | None = Field(default=None, foreign_key="ledger_transaction.id", index=True)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class UsageRollup(SQLModel, table=True):
    """One row per account and calendar month (in the account's time zone), kept current on every record."""

    __tablename__ = "usage_rollup"

    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    month: str = Field(primary_key=True, max_length=7, description="YYYY-MM")
    lead_spent_minor: int = Field(default=0, sa_type=BigInteger)
    leads: int = Field(default=0, sa_type=BigInteger)
    call_spent_minor: int = Field(default=0, sa_type=BigInteger)
    calls: int = Field(default=0, sa_type=BigInteger)
    call_seconds: int = Field(default=0, sa_type=BigInteger)
    ai_cost_minor: int = Field(default=0, sa_type=BigInteger)
    ai_requests: int = Field(default=0, sa_type=BigInteger)
    ai_input_tokens: int = Field(default=0, sa_type=BigInteger)
    ai_output_tokens: int = Field(default=0, sa_type=BigInteger)
