"""Auto-recharge settings per account and the recharges the engine runs."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, text
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class AutoRechargeState(StrEnum):
    ACTIVE = "active"
    IN_PROGRESS = "in_progress"
    ACTION_REQUIRED = "action_required"
    SUSPENDED = "suspended"
    MONTHLY_LIMIT_REACHED = "monthly_limit_reached"


class RechargeStatus(StrEnum):
    SCHEDULED = "scheduled"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ACTION_REQUIRED = "action_required"
    CANCELED = "canceled"


IN_FLIGHT_RECHARGE = "status IN ('scheduled', 'processing')"


class AutoRechargeSettings(SQLModel, table=True):
    __tablename__ = "auto_recharge_settings"

    account_id: int = Field(
        sa_column=Column(Integer, ForeignKey("account.id", ondelete="CASCADE"), primary_key=True)
    )
    enabled: bool = False
    threshold_minor: int = Field(sa_type=BigInteger)
    amount_minor: int = Field(sa_type=BigInteger)
    monthly_limit_minor: int = Field(sa_type=BigInteger)
    payment_method_id: int | None = Field(default=None, foreign_key="payment_method.id", ondelete="SET NULL")
    consecutive_failures: int = 0
    suspended_reason: str | None = Field(default=None, max_length=500)
    action_required_client_secret: str | None = Field(default=None, max_length=500)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Recharge(SQLModel, table=True):
    __tablename__ = "recharge"
    __table_args__ = (
        # At most one recharge in flight per account, whatever number of processes schedule them.
        Index(
            "uq_recharge_in_flight",
            "account_id",
            unique=True,
            sqlite_where=text(IN_FLIGHT_RECHARGE),
            postgresql_where=text(IN_FLIGHT_RECHARGE),
        ),
        Index("ix_recharge_due", "status", "run_after"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True, ondelete="CASCADE")
    status: str = Field(default=RechargeStatus.SCHEDULED, max_length=16)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    payment_method_id: int | None = Field(default=None, foreign_key="payment_method.id", ondelete="SET NULL")
    transaction_id: int | None = Field(default=None, foreign_key="ledger_transaction.id")
    attempts: int = 0
    run_after: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    outcome_message: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
