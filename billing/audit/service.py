"""The audit trail: every change to an account's billing settings, who made it, when, and in which request.

A filtered view of the domain events rather than a table of its own: the settings events are already written
in the change's own transaction, with their before and after, by the one commit hook (billing/events/service.py), which
also stamps every event with the actor (billing/audit/actors.py) and the request id. So an entry exists exactly when
the change does, and there is no second write path to keep in step. Money and balance events are not settings
and are left out: `AUDITED` names the event types that are, `describe` says what each one changed.

Values are strings as the database holds them (amounts in minor units, flags `true`/`false`); a value that is
another row's id names that row's type, so the schema can show it as a global ID. Secrets never reach here:
events carry none (see billing/events/service.py).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlmodel.ext.asyncio.session import AsyncSession

from billing.audit.actors import Actor, ActorKind
from billing.audit.repository import AuditRepository
from billing.events import service as events
from billing.pagination import (
    MAX_BIG_ROW_ID,
    Page,
    check_page_size,
    cursor_row_id,
    decode_cursor,
    encode_cursor,
)
from billing.scope import Scope
from models import DomainEventRow

CURSOR_KIND = "audit"
# The trail of changes that belong to no one account (every API key made or revoked, whatever its kind), kept
# where an account's would be, under an id no account has; the operator reads it with `python -m cli audit-log`.
OPERATOR_TRAIL = 0


class AuditAction(StrEnum):
    """What was done; the values are the events' types."""

    COMPANY_CHANGED = events.CompanyChanged.type
    AUTO_RECHARGE_SETTINGS_CHANGED = events.AutoRechargeSettingsChanged.type
    PAYMENT_METHOD_ADDED = events.PaymentMethodAdded.type
    PAYMENT_METHOD_REMOVED = events.PaymentMethodRemoved.type
    DEFAULT_PAYMENT_METHOD_CHANGED = events.DefaultPaymentMethodChanged.type
    LEAD_PLAN_CHANGED = events.LeadPlanChanged.type
    API_KEY_CREATED = events.ApiKeyCreated.type
    API_KEY_REVOKED = events.ApiKeyRevoked.type
    WEBHOOK_ENDPOINT_CHANGED = events.WebhookEndpointChanged.type
    WEBHOOK_SECRET_ROTATED = events.WebhookSecretRotated.type


@dataclass(frozen=True)
class Change:
    field: str
    before: str | None
    after: str | None
    # The row type when the values are ids of that type's rows (e.g. "PaymentMethod").
    refers_to: str | None = None


@dataclass(frozen=True)
class Subject:
    """The row the entry is about, when not the account itself: a payment method, a lead plan, a webhook
    endpoint."""

    type: str
    id: int


@dataclass(frozen=True)
class AuditEntry:
    id: int
    occurred_at: datetime
    action: AuditAction
    # None for events written before the audit trail recorded who made them.
    actor: Actor | None
    request_id: str | None
    subject: Subject | None
    changes: list[Change]


def _text(value: str | int | bool | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _compared(
    before: events.Snapshot | None,
    after: events.Snapshot | None,
    fields: tuple[str, ...],
    refers: Mapping[str, str],
) -> list[Change]:
    """The fields whose value differs (every set field, when there was nothing before or is nothing after)."""
    was: events.Snapshot = before or {}
    now: events.Snapshot = after or {}
    return [
        Change(name, _text(was.get(name)), _text(now.get(name)), refers.get(name))
        for name in fields
        if was.get(name) != now.get(name)
    ]


def _added(values: events.Snapshot) -> list[Change]:
    return [Change(name, None, _text(value)) for name, value in values.items()]


def _removed(values: events.Snapshot) -> list[Change]:
    return [Change(name, _text(value), None) for name, value in values.items()]


def describe(event: events.DomainEvent) -> tuple[Subject | None, list[Change]]:
    """What an audited event changed, and on which row."""
    match event:
        case events.CompanyChanged(before=before, after=after):
            return None, _compared(before, after, events.CompanyChanged.FIELDS, {})
        case events.AutoRechargeSettingsChanged(before=before, after=after):
            refers = {"payment_method_id": "PaymentMethod"}
            return None, _compared(before, after, events.AutoRechargeSettingsChanged.FIELDS, refers)
        case events.LeadPlanChanged(lead_plan_id=plan_id, before=before, after=after):
            return Subject("LeadPlan", plan_id), _compared(before, after, events.LeadPlanChanged.FIELDS, {})
        case events.PaymentMethodAdded(payment_method_id=method_id, brand=brand, last4=last4):
            values: events.Snapshot = {"brand": brand, "last4": last4, "is_default": event.is_default}
            return Subject("PaymentMethod", method_id), _added(values)
        case events.PaymentMethodRemoved(payment_method_id=method_id, brand=brand, last4=last4):
            return Subject("PaymentMethod", method_id), _removed({"brand": brand, "last4": last4})
        case events.DefaultPaymentMethodChanged(before_id=before_id, after_id=after_id):
            change = Change("default_payment_method_id", _text(before_id), _text(after_id), "PaymentMethod")
            return None, [change]
        # A key is no node of the schema: its name and visible prefix say which one it is.
        case events.ApiKeyCreated(name=name, prefix=prefix, kind=kind):
            return None, _added({"name": name, "prefix": prefix, "kind": kind})
        case events.ApiKeyRevoked(name=name, prefix=prefix, kind=kind):
            return None, _removed({"name": name, "prefix": prefix, "kind": kind})
        case events.WebhookEndpointChanged(webhook_endpoint_id=endpoint_id, before=before, after=after):
            fields = events.WebhookEndpointChanged.FIELDS
            return Subject("WebhookEndpoint", endpoint_id), _compared(before, after, fields, {})
        # Only that a new secret exists: the secret itself is never recorded.
        case events.WebhookSecretRotated(webhook_endpoint_id=endpoint_id):
            return Subject("WebhookEndpoint", endpoint_id), []
    raise ValueError(f"not an audited event: {event.type}")


AUDITED: frozenset[str] = frozenset(action.value for action in AuditAction)


def audit_cursor(entry: AuditEntry) -> str:
    return encode_cursor(CURSOR_KIND, str(entry.id))


def _entry(row: DomainEventRow) -> AuditEntry:
    assert row.id is not None
    event = events.from_json(row.type, row.payload)
    subject, changes = describe(event)
    actor = None
    if row.actor_kind is not None:
        actor = Actor(ActorKind(row.actor_kind), row.actor_name, row.actor_key_prefix)
    return AuditEntry(
        id=row.id,
        occurred_at=row.occurred_at,
        action=AuditAction(row.type),
        actor=actor,
        request_id=row.request_id,
        subject=subject,
        changes=changes,
    )


async def audit_log(
    session: AsyncSession, scope: Scope, account_id: int, *, first: int, after: str | None = None
) -> Page[AuditEntry]:
    """One page of an account's audit trail, newest first (keyset on the event id, which follows commit
    order); an account outside the scope has none."""
    check_page_size(first)
    before_id = None
    if after is not None:
        (raw_id,) = decode_cursor(after, CURSOR_KIND, 1)
        before_id = cursor_row_id(raw_id, maximum=MAX_BIG_ROW_ID)
    rows = await AuditRepository(session, scope).page(
        account_id, AUDITED, before_id=before_id, limit=first + 1
    )
    return Page([_entry(row) for row in rows[:first]], has_next=len(rows) > first)
