"""Outgoing webhooks' statements, within a scope: endpoints, their deliveries, the outbox the commit fills and the
worker's claims."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, String, Table, and_, cast, delete, exists, func, literal, union_all, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.scope import Scope
from models import PaymentMethod, WebhookDelivery, WebhookEndpoint, WebhookEndpointStatus
from models.outgoing_webhooks import WebhookDeliveryStatus

_ENDPOINTS: Table = WebhookEndpoint.__table__  # type: ignore[attr-defined]
_DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[attr-defined]
_NEW_DELIVERY_COLUMNS = [
    "account_id",
    "endpoint_id",
    "event_type",
    "event_key",
    "webhook_id",
    "payload",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
]


def _insert_new(dialect_name: str) -> postgresql.Insert | sqlite.Insert:
    """An INSERT of deliveries that skips one whose (endpoint, event key) is already queued."""
    if dialect_name == "postgresql":
        return postgresql.insert(_DELIVERIES)
    return sqlite.insert(_DELIVERIES)


class OutboxRepository:
    """The deliveries a commit queues, written on the committing transaction's connection (the events' writer
    hook runs there, billing/events/service.py)."""

    def __init__(self, connection: Connection, scope: Scope) -> None:
        self.connection = connection
        self.scope = scope

    def queue_for_subscribers(self, events: Sequence[tuple[int, str, str, dict[str, Any], datetime]]) -> None:
        """For each (account id, event type, event key, payload, occurred at), a delivery to every endpoint of
        the account subscribed to the type (disabled ones excepted): one INSERT ... SELECT for all of them."""
        selects = [
            # Core's select: sqlmodel's has no overload for ten columns.
            sqlalchemy.select(
                _ENDPOINTS.c.account_id,
                _ENDPOINTS.c.id,
                literal(event_type, String),
                literal(key, String),
                literal("msg_", String) + cast(_ENDPOINTS.c.id, String) + literal(f"_{key}", String),
                literal(body, _DELIVERIES.c.payload.type),
                literal(WebhookDeliveryStatus.PENDING.value, String),
                literal(0),
                literal(occurred_at, _DELIVERIES.c.next_attempt_at.type),
                literal(occurred_at, _DELIVERIES.c.created_at.type),
            ).where(
                _ENDPOINTS.c.account_id == account_id,
                self.scope.accounts(_ENDPOINTS.c.account_id),
                _ENDPOINTS.c.status != WebhookEndpointStatus.DISABLED.value,
                _ENDPOINTS.c.event_types.contains(f",{event_type},", autoescape=True),
            )
            for account_id, event_type, key, body, occurred_at in events
        ]
        if not selects:
            return
        source = selects[0] if len(selects) == 1 else union_all(*selects)
        self.connection.execute(
            _insert_new(self.connection.dialect.name)
            .from_select(_NEW_DELIVERY_COLUMNS, source)
            .on_conflict_do_nothing()
        )


class OutgoingWebhookRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    async def count_endpoints(self, account_id: int) -> int:
        statement = (
            select(func.count())
            .select_from(_ENDPOINTS)
            .where(_ENDPOINTS.c.account_id == account_id, self.scope.accounts(_ENDPOINTS.c.account_id))
        )
        return (await self.session.exec(statement)).one()

    async def add(self, row: WebhookEndpoint | WebhookDelivery) -> None:
        """A new endpoint or delivery, flushed (its id is set); the caller found its account through this scope."""
        self.session.add(row)
        await self.session.flush()

    async def endpoint_locked(self, endpoint_id: int) -> WebhookEndpoint | None:
        """The endpoint, locked, or None whether it is missing or outside the scope."""
        statement = (
            select(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, self.scope.accounts(col(WebhookEndpoint.account_id)))
            .with_for_update()
        )
        return (await self.session.exec(statement)).one_or_none()

    async def delete_endpoint(self, endpoint: WebhookEndpoint) -> None:
        """The endpoint (found through this scope) and its deliveries."""
        await self.session.exec(
            delete(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint.id)
        )
        await self.session.delete(endpoint)
        await self.session.flush()

    async def endpoints_of(self, account_id: int) -> list[WebhookEndpoint]:
        statement = (
            select(WebhookEndpoint)
            .where(
                col(WebhookEndpoint.account_id) == account_id,
                self.scope.accounts(col(WebhookEndpoint.account_id)),
            )
            .order_by(col(WebhookEndpoint.id))
        )
        return list((await self.session.exec(statement)).all())

    async def deliveries_of(
        self, account_id: int, *, before_id: int | None, limit: int
    ) -> list[WebhookDelivery]:
        """Newest first, ids below `before_id` (None: from the newest)."""
        statement = select(WebhookDelivery).where(
            col(WebhookDelivery.account_id) == account_id,
            self.scope.accounts(col(WebhookDelivery.account_id)),
        )
        if before_id is not None:
            statement = statement.where(col(WebhookDelivery.id) < before_id)
        return list(
            (await self.session.exec(statement.order_by(col(WebhookDelivery.id).desc()).limit(limit))).all()
        )

    async def cards_expiring_to_subscribers(
        self, first_month: int, last_month: int, event_type: str
    ) -> Sequence[tuple[PaymentMethod, int | None]]:
        """Cards whose expiry month index (year * 12 + month - 1) is between these, each with every endpoint id of
        its account subscribed to `event_type` (disabled ones excepted)."""
        card_month = col(PaymentMethod.exp_year) * 12 + col(PaymentMethod.exp_month) - 1
        statement = (
            select(PaymentMethod, WebhookEndpoint.id)
            .join(WebhookEndpoint, col(WebhookEndpoint.account_id) == col(PaymentMethod.account_id))
            .where(
                card_month.between(first_month, last_month),
                self.scope.accounts(col(PaymentMethod.account_id)),
                col(WebhookEndpoint.status) != WebhookEndpointStatus.DISABLED,
                col(WebhookEndpoint.event_types).contains(f",{event_type},", autoescape=True),
            )
            .order_by(col(PaymentMethod.account_id), col(PaymentMethod.id), col(WebhookEndpoint.id))
        )
        return (await self.session.exec(statement)).all()

    async def queue_new(self, rows: Sequence[dict[str, Any]]) -> int:
        """Deliveries queued, skipping any already queued (same endpoint and event key); how many were new."""
        new = (
            _insert_new(self.session.get_bind().dialect.name)
            .on_conflict_do_nothing()
            .returning(_DELIVERIES.c.id)
        )
        result = await (await self.session.connection()).execute(new, rows)
        return len(result.all())

    async def claim_due(
        self, *, now: datetime, limit: int
    ) -> Sequence[tuple[WebhookDelivery, WebhookEndpoint]]:
        """Due deliveries nobody holds, with no earlier delivery of their endpoint still pending, locked."""
        earlier = aliased(WebhookDelivery)
        statement = (
            select(WebhookDelivery, WebhookEndpoint)
            .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookDelivery.endpoint_id))
            .where(
                col(WebhookDelivery.status) == WebhookDeliveryStatus.PENDING,
                col(WebhookDelivery.next_attempt_at) <= now,
                (col(WebhookDelivery.locked_until).is_(None)) | (col(WebhookDelivery.locked_until) <= now),
                col(WebhookEndpoint.status) != WebhookEndpointStatus.DISABLED,
                self.scope.accounts(col(WebhookDelivery.account_id)),
                ~exists().where(
                    and_(
                        col(earlier.endpoint_id) == col(WebhookDelivery.endpoint_id),
                        col(earlier.status) == WebhookDeliveryStatus.PENDING,
                        col(earlier.id) < col(WebhookDelivery.id),
                    )
                ),
            )
            .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
            .limit(limit)
            # PostgreSQL: concurrent workers skip each other's rows. SQLite has one writer and ignores this.
            .with_for_update(skip_locked=True, of=WebhookDelivery)
        )
        return (await self.session.exec(statement)).all()

    async def record_attempt(self, delivery_id: int, attempt: int, values: dict[str, object]) -> bool:
        """The attempt's outcome written, unless the delivery is no longer pending at that attempt (another
        attempt holds it); whether it was written."""
        statement = (
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id) == delivery_id,
                col(WebhookDelivery.attempts) == attempt,
                col(WebhookDelivery.status) == WebhookDeliveryStatus.PENDING,
                self.scope.accounts(col(WebhookDelivery.account_id)),
            )
            .values(values)
        )
        return (await self.session.exec(statement)).rowcount != 0

    async def set_health(self, endpoint_id: int, health: WebhookEndpointStatus, *, now: datetime) -> None:
        """The endpoint's status, unless it is disabled or already so."""
        await self.session.exec(
            update(WebhookEndpoint)
            .where(
                col(WebhookEndpoint.id) == endpoint_id,
                self.scope.accounts(col(WebhookEndpoint.account_id)),
                col(WebhookEndpoint.status) != WebhookEndpointStatus.DISABLED,
                col(WebhookEndpoint.status) != health,
            )
            .values(status=health, updated_at=now)
        )
