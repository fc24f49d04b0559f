"""The local mirror of the cards saved in Stripe."""

from datetime import datetime

from sqlalchemy import Index, text
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class PaymentMethod(SQLModel, table=True):
    __tablename__ = "payment_method"
    __table_args__ = (
        # At most one default card per account.
        Index(
            "uq_payment_method_default",
            "account_id",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True, ondelete="CASCADE")
    stripe_payment_method_id: str = Field(max_length=255, unique=True)
    brand: str = Field(max_length=32)
    last4: str = Field(max_length=4)
    exp_month: int
    exp_year: int
    is_default: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
