"""Reference exchange rates (ECB: units of a currency per 1 EUR, one set a business day)."""

from datetime import date
from decimal import Decimal

from sqlmodel import Field, SQLModel


class FxRate(SQLModel, table=True):
    __tablename__ = "fx_rate"

    currency: str = Field(primary_key=True, max_length=3)
    rate_date: date = Field(primary_key=True)
    # Kept as the published decimal text: exact, and the same on SQLite and PostgreSQL.
    per_eur: str = Field(max_length=32)

    @property
    def per_eur_decimal(self) -> Decimal:
        return Decimal(self.per_eur)
