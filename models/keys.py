"""API keys and partner access: who may see which accounts."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, ForeignKey, Integer
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class PrincipalKind(StrEnum):
    MEMBER = "member"
    PARTNER = "partner"
    ADMIN = "admin"
    USAGE_REPORTER = "usage_reporter"


class Partner(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PartnerAccount(SQLModel, table=True):
    __tablename__ = "partner_account"

    partner_id: int = Field(
        sa_column=Column(Integer, ForeignKey("partner.id", ondelete="CASCADE"), primary_key=True)
    )
    account_id: int = Field(
        sa_column=Column(Integer, ForeignKey("account.id", ondelete="CASCADE"), primary_key=True, index=True)
    )


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    prefix: str = Field(max_length=16, unique=True, description="shown in lists; finds the key")
    secret_hash: str = Field(max_length=64, description="SHA-256 hex of the whole key")
    kind: str = Field(max_length=16)
    account_id: int | None = Field(default=None, foreign_key="account.id", ondelete="CASCADE")
    partner_id: int | None = Field(default=None, foreign_key="partner.id", ondelete="CASCADE")
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
