"""Domain events: what changed in an account, appended in the same transaction as the change (billing/events.py).

Append-only, read by cursor (`id`): a reconnecting client or another process asks for what came after the last
id it saw, for the accounts it may see. No foreign key to the account: an event stays readable as history, and
writing one takes no lock on the account row (the commit that writes events must wait on no other lock).
"""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Identity, Index, Integer
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class DomainEventRow(SQLModel, table=True):
    __tablename__ = "domain_event"
    __table_args__ = (
        Index("ix_domain_event_account", "account_id", "id"),
        # A cursor must never meet a reused id (SQLite would reuse the highest one once it is deleted).
        {"sqlite_autoincrement": True},
    )

    # BIGINT identity on PostgreSQL; SQLite numbers rows only through an INTEGER PRIMARY KEY (64-bit there too).
    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True),
    )
    account_id: int
    type: str = Field(max_length=64)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
