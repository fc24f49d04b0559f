"""Accounts and their company profile."""

from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, Integer
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class Account(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    currency: str = Field(max_length=3, description="ISO 4217 billing currency")
    country: str = Field(max_length=2, description="ISO 3166-1 alpha-2")
    time_zone: str = Field(default="UTC", max_length=64, description="IANA zone; months are counted in it")
    stripe_customer_id: str | None = Field(default=None, max_length=255, unique=True)
    # Written only by billing.ledger.service, in the same transaction as the ledger entry that changes it.
    balance_minor: int = Field(default=0, sa_type=BigInteger)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Company(SQLModel, table=True):
    account_id: int = Field(
        sa_column=Column(Integer, ForeignKey("account.id", ondelete="CASCADE"), primary_key=True)
    )
    legal_name: str | None = Field(default=None, max_length=200)
    registration_number: str | None = Field(default=None, max_length=64)
    vat_id: str | None = Field(default=None, max_length=32)
    phone: str | None = Field(default=None, max_length=32, description="E.164")
    address_line1: str | None = Field(default=None, max_length=200)
    address_line2: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)
    region: str | None = Field(default=None, max_length=100)
    country: str | None = Field(default=None, max_length=2)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
