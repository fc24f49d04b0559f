"""Stripe webhook events seen, by id, so a redelivery does nothing; a refused one says why."""

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class StripeEventOutcome(StrEnum):
    PROCESSED = "processed"
    # Validly signed but not acted on: unreadable, or not a charge of ours. Nothing else was written.
    REJECTED = "rejected"


class StripeEvent(SQLModel, table=True):
    __tablename__ = "stripe_event"

    # The event's id, or `sha256:<digest of the body>` for a signed body whose id could not be read.
    id: str = Field(primary_key=True, max_length=255)
    type: str = Field(max_length=100)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    outcome: str = Field(default=StripeEventOutcome.PROCESSED, max_length=16)
    rejection_reason: str | None = Field(default=None, max_length=500)
