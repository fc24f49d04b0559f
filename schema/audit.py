"""The audit trail as the Billing page shows it: who changed which settings, when, and in which request."""

from datetime import datetime

import strawberry
from strawberry.utils.str_converters import to_camel_case

from billing import audit
from billing.actors import ActorKind
from schema.node import to_global_id
from schema.pagination import Connection

strawberry.enum(audit.AuditAction, name="AuditAction")
strawberry.enum(ActorKind, name="ActorKind")


@strawberry.type(description="Who made a change: an API key (its kind and name), or a process of ours.")
class AuditActor:
    kind: ActorKind
    name: str | None = strawberry.field(description="The key's name; null for a process.")
    key_prefix: str | None = strawberry.field(description="The key's visible prefix (never its secret).")


@strawberry.type(
    description="One field's value before and after, as text: amounts in minor units, flags true/false, "
    "ids of other objects as their global IDs; null where there was (or is) no value."
)
class AuditChange:
    field: str
    before: str | None
    after: str | None


@strawberry.type(description="A change to the account's billing settings.")
class AuditEntry:
    occurred_at: datetime
    action: audit.AuditAction
    actor: AuditActor | None = strawberry.field(
        description="Null for changes made before the audit trail recorded who made them."
    )
    request_id: str | None = strawberry.field(
        description="The X-Request-Id of the request that made the change; null outside a request."
    )
    subject_id: strawberry.ID | None = strawberry.field(
        description="The payment method or lead plan the change is about; null when it is the account's own."
    )
    changes: list[AuditChange]

    @classmethod
    def of(cls, entry: audit.AuditEntry) -> "AuditEntry":
        actor = entry.actor
        subject = entry.subject
        return cls(
            occurred_at=entry.occurred_at,
            action=entry.action,
            actor=AuditActor(kind=actor.kind, name=actor.name, key_prefix=actor.key_prefix)
            if actor
            else None,
            request_id=entry.request_id,
            subject_id=to_global_id(subject.type, subject.id) if subject else None,
            changes=[
                AuditChange(
                    field=to_camel_case(change.field),
                    before=_value(change.before, change.refers_to),
                    after=_value(change.after, change.refers_to),
                )
                for change in entry.changes
            ],
        )


def _value(value: str | None, refers_to: str | None) -> str | None:
    if value is None or refers_to is None:
        return value
    return to_global_id(refers_to, int(value))


AuditEntryConnection = Connection[AuditEntry]
