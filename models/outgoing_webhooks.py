"""Outgoing webhooks (Standard Webhooks): the endpoints an account registered and the durable outbox of deliveries.

A delivery row is written in the same transaction as the change it tells about (billing/outgoing_webhooks/service.py),
so it exists exactly when the change does; the worker sends it later (billing/outgoing_webhooks/delivery.py).
"""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class WebhookEndpointStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"  # by its owner: nothing is queued for it
    FAILING = (
        "failing"  # a delivery exhausted its retries; new events are still queued (the receiver may heal)
    )


class WebhookDeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


PENDING_DELIVERY = "status = 'pending'"


class WebhookEndpoint(SQLModel, table=True):
    __tablename__ = "webhook_endpoint"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True, ondelete="CASCADE")
    url: str = Field(max_length=2048)
    description: str = Field(default="", max_length=500)
    # The subscribed event types, each between commas (",balance.low,topup.succeeded,") so the fan-out's one
    # INSERT ... SELECT matches a type with LIKE on SQLite and PostgreSQL alike.
    event_types: str = Field(max_length=2000)
    # `whsec_` + base64 of the key, as the standard writes it: the receiver verifies with this very string.
    secret: str = Field(max_length=100)
    status: str = Field(default=WebhookEndpointStatus.ACTIVE, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_delivery"
    __table_args__ = (
        # The worker's claim: due pending deliveries, oldest first.
        Index(
            "ix_webhook_delivery_due",
            "next_attempt_at",
            postgresql_where=text(PENDING_DELIVERY),
            sqlite_where=text(PENDING_DELIVERY),
        ),
        # Order per endpoint: "is an earlier one still pending?", and the listing of an endpoint's deliveries.
        Index("ix_webhook_delivery_endpoint", "endpoint_id", "id"),
        Index("ix_webhook_delivery_account", "account_id", "id"),
        # One delivery per event and endpoint: the periodic checks (a card expiring) insert with ON CONFLICT.
        UniqueConstraint("endpoint_id", "event_key", name="uq_webhook_delivery_event"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", ondelete="CASCADE")
    endpoint_id: int = Field(foreign_key="webhook_endpoint.id", ondelete="CASCADE")
    event_type: str = Field(max_length=64)
    # What the event is about, unique per endpoint ("event:<domain event id>", "payment_method.expiring:<card>:<month>").
    event_key: str = Field(max_length=128)
    # The `webhook-id` header: the same on every attempt, so receivers can de-duplicate.
    webhook_id: str = Field(max_length=128, unique=True)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default=WebhookDeliveryStatus.PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # A worker holds a claimed delivery until then; one that dies mid-send loses it and another resends.
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_response_status: int | None = None
    last_response_body: str | None = Field(default=None, sa_column=Column(Text))
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
