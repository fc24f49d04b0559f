"""Saved cards, as mirrored from Stripe (card data never reaches this server)."""

from datetime import datetime

import strawberry

from models import PaymentMethod as PaymentMethodModel
from schema.node import Node, to_global_id


@strawberry.type
class PaymentMethod(Node):
    stripe_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    is_default: bool
    created_at: datetime

    @classmethod
    def from_model(cls, row: PaymentMethodModel) -> "PaymentMethod":
        assert row.id is not None
        return cls(
            id=to_global_id("PaymentMethod", row.id),
            stripe_id=row.stripe_payment_method_id,
            brand=row.brand,
            last4=row.last4,
            exp_month=row.exp_month,
            exp_year=row.exp_year,
            is_default=row.is_default,
            created_at=row.created_at,
        )
