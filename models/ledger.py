"""The ledger: append-only money movements. Amounts never change; statuses only move forward."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class TransactionKind(StrEnum):
    TOP_UP = "top_up"
    AUTO_RECHARGE = "auto_recharge"
    USAGE_LEADS = "usage_leads"
    USAGE_CALLS = "usage_calls"
    USAGE_AI_AGENT = "usage_ai_agent"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"


class TransactionStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class Transaction(SQLModel, table=True):
    __tablename__ = "ledger_transaction"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key", name="uq_ledger_transaction_idempotency"),
        # Newest-first keyset pagination of the history.
        Index("ix_ledger_transaction_history", "account_id", "created_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", ondelete="CASCADE")
    kind: str = Field(max_length=32)
    status: str = Field(max_length=16)
    # Signed: credits are positive, debits negative. Counted in the balance only once succeeded.
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    description: str = Field(max_length=500)
    idempotency_key: str = Field(max_length=255)
    payment_method_id: int | None = Field(default=None, foreign_key="payment_method.id", ondelete="SET NULL")
    stripe_payment_intent_id: str | None = Field(default=None, max_length=255, unique=True)
    # The entry this one reverses or refunds.
    reverses_id: int | None = Field(default=None, foreign_key="ledger_transaction.id")
    failure_code: str | None = Field(default=None, max_length=100)
    failure_message: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    settled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
