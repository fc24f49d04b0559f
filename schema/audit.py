"""The audit trail as the Billing page shows it: who changed which settings, when, and in which request.

The domain names what changed by its own field names (billing/audit/service.py); here each is given the API's name for
it, from one table per domain (README "Audit trail"): the field's path in the input of the mutation that sets
it (`address.line1`, `threshold`, `monthlyBudget`, `eventTypes`), or, for a value no input sets, the field that
shows it on the object the entry is about (a lead plan's `status`, a card's `brand`).
"""

from collections.abc import Mapping
from datetime import datetime

import strawberry

from billing.audit import service as audit
from billing.audit.actors import ActorKind
from billing.audit.service import AuditAction
from schema.node import to_global_id
from schema.pagination import Connection

strawberry.enum(AuditAction, name="AuditAction")
strawberry.enum(ActorKind, name="ActorKind")

# updateCompany(input: UpdateCompanyInput)
_COMPANY = {
    "legal_name": "legalName",
    "registration_number": "registrationNumber",
    "vat_id": "vatId",
    "phone": "phone",
    "address_line1": "address.line1",
    "address_line2": "address.line2",
    "city": "address.city",
    "postal_code": "address.postalCode",
    "region": "address.region",
    "country": "address.country",
}
# autoRecharge(input: AutoRechargeInput); amounts stay in minor units (see AuditChange).
_AUTO_RECHARGE = {
    "enabled": "enabled",
    "threshold_minor": "threshold",
    "amount_minor": "amount",
    "monthly_limit_minor": "monthlyLimit",
    "payment_method_id": "paymentMethodId",
}
# PaymentMethod's fields (a card comes from Stripe, not from an input); setDefaultPaymentMethod's input.
_PAYMENT_METHOD = {
    "brand": "brand",
    "last4": "last4",
    "is_default": "isDefault",
    "default_payment_method_id": "paymentMethodId",
}
# createLeadPlan(input: CreateLeadPlanInput); LeadPlan's status and its budget's currency.
_LEAD_PLAN = {
    "name": "name",
    "monthly_budget_minor": "monthlyBudget",
    "price_per_lead_minor": "pricePerLead",
    "status": "status",
    "currency": "currency",
}
# `python -m cli create-api-key --kind --name`, and the key's visible prefix.
_API_KEY = {"name": "name", "kind": "kind", "prefix": "prefix"}
# create/updateWebhookEndpoint(input: ...); WebhookEndpoint's status (which `enabled` sets).
_WEBHOOK_ENDPOINT = {
    "url": "url",
    "description": "description",
    "event_types": "eventTypes",
    "status": "status",
}
FIELD_NAMES: Mapping[AuditAction, Mapping[str, str]] = {
    AuditAction.COMPANY_CHANGED: _COMPANY,
    AuditAction.AUTO_RECHARGE_SETTINGS_CHANGED: _AUTO_RECHARGE,
    AuditAction.PAYMENT_METHOD_ADDED: _PAYMENT_METHOD,
    AuditAction.PAYMENT_METHOD_REMOVED: _PAYMENT_METHOD,
    AuditAction.DEFAULT_PAYMENT_METHOD_CHANGED: _PAYMENT_METHOD,
    AuditAction.LEAD_PLAN_CHANGED: _LEAD_PLAN,
    AuditAction.API_KEY_CREATED: _API_KEY,
    AuditAction.API_KEY_REVOKED: _API_KEY,
    AuditAction.WEBHOOK_ENDPOINT_CHANGED: _WEBHOOK_ENDPOINT,
    AuditAction.WEBHOOK_SECRET_ROTATED: {},
}


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
    field: str = strawberry.field(
        description="The field's path in the input of the mutation that sets it (e.g. `address.line1`, "
        "`threshold`), or the field showing it on the object the entry is about (e.g. `status`, `brand`)."
    )
    before: str | None
    after: str | None


@strawberry.type(description="A change to the account's billing settings.")
class AuditEntry:
    occurred_at: datetime
    action: AuditAction
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
        names = FIELD_NAMES[entry.action]
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
                    field=names[change.field],
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
