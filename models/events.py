"""Domain events: what changed in an account, appended in the same transaction as the change (billing/events/service.py).

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
        # The audit trail reads one account's settings events by type, newest first (billing/audit/service.py).
        Index("ix_domain_event_audit", "account_id", "type", "id"),
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
    # Who made the change and in which request (billing/audit/actors.py): the audit trail's "who" and "from where".
    # A key's kind, name and visible prefix, never its secret; a process ("system", "stripe") has no name.
    # Null on events written before the audit trail existed.
    actor_kind: str | None = Field(default=None, max_length=32)
    actor_name: str | None = Field(default=None, max_length=200)
    actor_key_prefix: str | None = Field(default=None, max_length=16)
    request_id: str | None = Field(default=None, max_length=128)
