"""Outgoing webhooks (Standard Webhooks): which domain events become which webhook events, the outbox they are
written to, the endpoints' rules, and the address check that keeps requests out of our own network.

The outbox is written in the committing transaction itself: `billing.events.service` hands the events it just wrote to
`fan_out` (`events.on_write`), which adds one delivery per subscribed endpoint with one INSERT ... SELECT, so a
delivery exists exactly when its change does, and an account without endpoints costs one index lookup. The
worker sends them (billing/outgoing_webhooks/delivery.py).

Payloads follow the standard's shape, `{"type", "timestamp", "data"}`; ids in `data` are the API's global IDs
(billing/global_ids.py), the same strings `Account.id`, `Transaction.id` and the like answer.
"""

import asyncio
import base64
import ipaddress
import secrets
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts import service as accounts
from billing.accounts.funding import FundingState
from billing.errors import DomainError, NotFound
from billing.events import service as events
from billing.events.service import (
    AutoRechargeHalted,
    DomainEvent,
    FundingStateChanged,
    LeadBudgetReached,
    StoredEvent,
    TransactionSettled,
)
from billing.global_ids import to_global_id
from billing.keys.service import Principal
from billing.ledger import service as ledger
from billing.outgoing_webhooks.repository import OutboxRepository, OutgoingWebhookRepository
from billing.pagination import Page, check_page_size, cursor_row_id, decode_cursor, encode_cursor
from billing.scope import Scope
from models import (
    AutoRechargeState,
    PrincipalKind,
    TransactionKind,
    TransactionStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointStatus,
)
from models.outgoing_webhooks import WebhookDeliveryStatus

BALANCE_LOW = "balance.low"
BALANCE_DEPLETED = "balance.depleted"
TOPUP_SUCCEEDED = "topup.succeeded"
TOPUP_FAILED = "topup.failed"
AUTO_RECHARGE_SUCCEEDED = "auto_recharge.succeeded"
AUTO_RECHARGE_FAILED = "auto_recharge.failed"
AUTO_RECHARGE_ACTION_REQUIRED = "auto_recharge.action_required"
AUTO_RECHARGE_SUSPENDED = "auto_recharge.suspended"
PAYMENT_METHOD_EXPIRING = "payment_method.expiring"
USAGE_BUDGET_REACHED = "usage.budget_reached"
# What a receiver may subscribe to. `webhook.test` is sent only by `sendTestWebhook`, whatever the subscription.
EVENT_TYPES: tuple[str, ...] = (
    BALANCE_LOW,
    BALANCE_DEPLETED,
    TOPUP_SUCCEEDED,
    TOPUP_FAILED,
    AUTO_RECHARGE_SUCCEEDED,
    AUTO_RECHARGE_FAILED,
    AUTO_RECHARGE_ACTION_REQUIRED,
    AUTO_RECHARGE_SUSPENDED,
    PAYMENT_METHOD_EXPIRING,
    USAGE_BUDGET_REACHED,
)
TEST_EVENT = "webhook.test"

_SETTLED_TYPES: Mapping[tuple[TransactionKind, bool], str] = {
    (TransactionKind.TOP_UP, True): TOPUP_SUCCEEDED,
    (TransactionKind.TOP_UP, False): TOPUP_FAILED,
    (TransactionKind.AUTO_RECHARGE, True): AUTO_RECHARGE_SUCCEEDED,
    (TransactionKind.AUTO_RECHARGE, False): AUTO_RECHARGE_FAILED,
}


def new_secret() -> str:
    """A signing secret as the standard writes it: `whsec_` and the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def event_types_column(event_types: Sequence[str]) -> str:
    """The stored form of a subscription: each type between commas, so `LIKE '%,type,%'` matches one."""
    return "," + ",".join(sorted(set(event_types))) + ","


def subscribed(endpoint: WebhookEndpoint) -> list[str]:
    return [name for name in endpoint.event_types.split(",") if name]


def _audited(endpoint: WebhookEndpoint) -> events.Snapshot:
    """What the audit trail shows of an endpoint (billing/audit/service.py): never its secret."""
    return {
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": ", ".join(subscribed(endpoint)),
        "status": endpoint.status,
    }


def payload(event_type: str, occurred_at: datetime, data: Mapping[str, Any]) -> dict[str, Any]:
    """The body the standard asks for: the event's type, when it happened, and what it is about."""
    return {"type": event_type, "timestamp": occurred_at.isoformat(), "data": dict(data)}


@dataclass(frozen=True)
class _WebhookEvent:
    type: str
    data: dict[str, Any]
    # Unique per endpoint: a second delivery with the same key is not queued (once per plan month, say).
    key: str


def _webhook_event(stored: StoredEvent, written: Sequence[StoredEvent]) -> _WebhookEvent | None:
    """What a domain event becomes for receivers, or None when they are not told of it."""
    mapped = _type_and_data(stored.event, written)
    if mapped is None:
        return None
    event_type, data = mapped
    if isinstance(stored.event, LeadBudgetReached):
        return _WebhookEvent(
            event_type, data, f"{event_type}-{stored.event.lead_plan_id}-{stored.event.month}"
        )
    return _WebhookEvent(event_type, data, f"event-{stored.id}")


def _account(account_id: int) -> str:
    return to_global_id("Account", account_id)


def _type_and_data(event: DomainEvent, written: Sequence[StoredEvent]) -> tuple[str, dict[str, Any]] | None:
    if isinstance(event, FundingStateChanged):
        # Told when the balance falls into a state, not when a top-up lifts it out of depleted into low.
        falling = event.after is FundingState.DEPLETED or (
            event.after is FundingState.LOW and event.before is FundingState.OK
        )
        if not falling:
            return None
        currency = next(
            (
                other.event.currency
                for other in written
                if isinstance(other.event, events.BalanceChanged) and other.account_id == event.account_id
            ),
            None,
        )
        return (BALANCE_DEPLETED if event.after is FundingState.DEPLETED else BALANCE_LOW), {
            "account_id": _account(event.account_id),
            "funding_state": event.after.value,
            "balance": {"amount_minor": event.balance_minor, "currency": currency},
        }
    if isinstance(event, LeadBudgetReached):
        return USAGE_BUDGET_REACHED, {
            "account_id": _account(event.account_id),
            "lead_plan_id": to_global_id("LeadPlan", event.lead_plan_id),
            "month": event.month,
            "budget": {"amount_minor": event.budget_minor, "currency": event.currency},
            "spent": {"amount_minor": event.spent_minor, "currency": event.currency},
        }
    if isinstance(event, AutoRechargeHalted):
        halted_type = {
            AutoRechargeState.ACTION_REQUIRED: AUTO_RECHARGE_ACTION_REQUIRED,
            AutoRechargeState.SUSPENDED: AUTO_RECHARGE_SUSPENDED,
        }.get(event.state)
        if halted_type is None:
            return None
        return halted_type, {"account_id": _account(event.account_id), "reason": event.reason}
    if isinstance(event, TransactionSettled):
        event_type = _SETTLED_TYPES.get((event.kind, event.status is TransactionStatus.SUCCEEDED))
        if event_type is None:
            return None
        return event_type, {
            "account_id": _account(event.account_id),
            "transaction_id": to_global_id("Transaction", event.transaction_id),
            "status": event.status.value,
            "amount": {"amount_minor": event.amount_minor, "currency": event.currency},
            "failure_code": event.failure_code,
        }
    return None


def fan_out(connection: Connection, written: Sequence[StoredEvent]) -> None:
    """Queue a delivery of each webhook-worthy event to every endpoint of its account subscribed to its type
    (disabled ones excepted): one INSERT ... SELECT for the whole commit, nothing when no event is worth one."""
    worthy = []
    for stored in written:
        mapped = _webhook_event(stored, written)
        if mapped is None:
            continue
        body = payload(mapped.type, stored.occurred_at, mapped.data)
        worthy.append((stored.account_id, mapped.type, mapped.key, body, stored.occurred_at))
    # The commit's own events, of the accounts its services already checked: no caller's scope to narrow them.
    OutboxRepository(connection, Scope.system("a commit queues its events' webhooks")).queue_for_subscribers(
        worthy
    )


events.on_write(fan_out)


# --- where an endpoint may point ---------------------------------------------------------------------------


class UnsafeWebhookUrl(Exception):
    """The URL may not receive webhooks: its scheme, or an address it names or resolves to."""


def checked_url(url: str, *, loopback_allowed: bool) -> tuple[str, str, int]:
    """The URL's scheme, host and port when its form is acceptable (before any name is resolved).

    Plain http is for loopback receivers only, where they are allowed (development and tests).
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as error:
        raise UnsafeWebhookUrl("the URL's port is not a number between 0 and 65535") from error
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeWebhookUrl("the URL must be https://host/...")
    if parts.username is not None or parts.password is not None:
        raise UnsafeWebhookUrl("the URL may not carry a user name or password")
    if parts.scheme == "http" and not loopback_allowed:
        raise UnsafeWebhookUrl("the URL must use https")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _address_refusal(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, loopback_allowed: bool
) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _address_refusal(address.ipv4_mapped, loopback_allowed)
    if address.is_loopback:
        return None if loopback_allowed else "loopback"
    for refused, name in (
        (address.is_private, "private"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_reserved, "reserved"),
        (address.is_unspecified, "unspecified"),
        (not address.is_global, "non-global"),
    ):
        if refused:
            return name
    return None


async def resolved_addresses(url: str, *, loopback_allowed: bool) -> tuple[str, list[str]]:
    """The host and every address it resolves to, each checked: one refused address refuses the URL (a name
    may answer differently next time, so the sender connects only to an address checked here)."""
    scheme, host, port = checked_url(url, loopback_allowed=loopback_allowed)
    if scheme == "http" and not _is_loopback_name(host):
        raise UnsafeWebhookUrl("plain http is only for a receiver on loopback")
    try:
        addresses = await resolve(host, port)
    except socket.gaierror as error:
        raise UnsafeWebhookUrl(f"the host {host} does not resolve") from error
    if not addresses:
        raise UnsafeWebhookUrl(f"the host {host} does not resolve")
    for text in addresses:
        refusal = _address_refusal(ipaddress.ip_address(text.split("%")[0]), loopback_allowed)
        if refusal is not None:
            raise UnsafeWebhookUrl(f"the host {host} resolves to a {refusal} address")
    return host, addresses


async def resolve(host: str, port: int) -> list[str]:
    """Every address the name resolves to now (tests replace this to play a name that answers privately)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _is_loopback_name(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- endpoints: what their owners may change ---------------------------------------------------------------

MAX_URL_LENGTH = 2_048
MAX_DESCRIPTION_LENGTH = 500
MAX_ENDPOINTS_PER_ACCOUNT = 10


class InvalidWebhookEndpoint(DomainError):
    """Every problem of the input at once, each naming its field."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {why}" for field, why in problems))
        self.problems = problems


class WebhookEndpointLimitReached(DomainError):
    pass


class WebhookEndpointManagementDenied(DomainError):
    """Usage reporters manage nothing."""


@dataclass(frozen=True)
class EndpointInput:
    """What a create or update asks for; None leaves a field as it is (an update)."""

    url: str | None = None
    event_types: Sequence[str] | None = None
    description: str | None = None
    enabled: bool | None = None


@dataclass(frozen=True)
class VettedEndpoint:
    """An input whose URL was checked (its name resolved) before any transaction began: the lookup is network."""

    url: str | None
    event_types: str | None  # the stored form
    description: str | None
    enabled: bool | None


async def vetted(request: EndpointInput, *, loopback_allowed: bool, creating: bool) -> VettedEndpoint:
    """The input checked: bounds, known event types, and a URL that may receive webhooks now."""
    problems: list[tuple[str, str]] = []
    if creating and request.url is None:
        problems.append(("url", "required"))
    if creating and request.event_types is None:
        problems.append(("event_types", "required"))
    if request.url is not None:
        if len(request.url) > MAX_URL_LENGTH:
            problems.append(("url", f"at most {MAX_URL_LENGTH} characters"))
        else:
            try:
                await resolved_addresses(request.url, loopback_allowed=loopback_allowed)
            except UnsafeWebhookUrl as error:
                problems.append(("url", str(error)))
    if request.event_types is not None:
        if len(request.event_types) > len(EVENT_TYPES):
            problems.append(("event_types", f"at most {len(EVENT_TYPES)} types"))
        elif not request.event_types:
            problems.append(("event_types", "at least one type"))
        else:
            unknown = sorted(set(request.event_types) - set(EVENT_TYPES))
            if unknown:
                problems.append(("event_types", f"unknown: {', '.join(unknown)[:200]}"))
    if request.description is not None and len(request.description) > MAX_DESCRIPTION_LENGTH:
        problems.append(("description", f"at most {MAX_DESCRIPTION_LENGTH} characters"))
    if problems:
        raise InvalidWebhookEndpoint(problems)
    return VettedEndpoint(
        url=request.url,
        event_types=None if request.event_types is None else event_types_column(request.event_types),
        description=request.description,
        enabled=request.enabled,
    )


def _check_may_manage(principal: Principal) -> None:
    if principal.kind not in (PrincipalKind.MEMBER, PrincipalKind.PARTNER, PrincipalKind.ADMIN):
        raise WebhookEndpointManagementDenied("this API key may not manage webhook endpoints")


async def create_endpoint(
    session: AsyncSession, principal: Principal, account_id: int, request: VettedEndpoint, *, now: datetime
) -> WebhookEndpoint:
    """A new endpoint with a new secret (the answer is the only time the secret is shown)."""
    _check_may_manage(principal)
    # Locks the account row: concurrent creates count endpoints one after the other.
    await accounts.get_visible(session, principal, account_id)
    scope = Scope.of(principal)
    await ledger.lock_account(session, scope, account_id)
    repository = OutgoingWebhookRepository(session, scope)
    if await repository.count_endpoints(account_id) >= MAX_ENDPOINTS_PER_ACCOUNT:
        raise WebhookEndpointLimitReached(
            f"an account has at most {MAX_ENDPOINTS_PER_ACCOUNT} webhook endpoints"
        )
    assert request.url is not None and request.event_types is not None
    endpoint = WebhookEndpoint(
        account_id=account_id,
        url=request.url,
        description=request.description or "",
        event_types=request.event_types,
        secret=new_secret(),
        status=WebhookEndpointStatus.DISABLED if request.enabled is False else WebhookEndpointStatus.ACTIVE,
        created_at=now,
        updated_at=now,
    )
    await repository.add(endpoint)
    assert endpoint.id is not None
    events.record(session, events.WebhookEndpointChanged(account_id, endpoint.id, None, _audited(endpoint)))
    return endpoint


async def endpoint_in_scope(session: AsyncSession, principal: Principal, endpoint_id: int) -> WebhookEndpoint:
    """The endpoint, locked, or NotFound whether it is missing or someone else's."""
    _check_may_manage(principal)
    endpoint = await OutgoingWebhookRepository(session, Scope.of(principal)).endpoint_locked(endpoint_id)
    if endpoint is None:
        raise NotFound("webhook endpoint not found")
    return endpoint


async def update_endpoint(
    session: AsyncSession, principal: Principal, endpoint_id: int, change: VettedEndpoint, *, now: datetime
) -> WebhookEndpoint:
    endpoint = await endpoint_in_scope(session, principal, endpoint_id)
    before = _audited(endpoint)
    if change.url is not None:
        endpoint.url = change.url
    if change.event_types is not None:
        endpoint.event_types = change.event_types
    if change.description is not None:
        endpoint.description = change.description
    if change.enabled is not None:
        # Enabling again starts afresh: a failing endpoint the owner fixed is active.
        endpoint.status = WebhookEndpointStatus.ACTIVE if change.enabled else WebhookEndpointStatus.DISABLED
    endpoint.updated_at = now
    await session.flush()
    after = _audited(endpoint)
    if after != before:
        events.record(session, events.WebhookEndpointChanged(endpoint.account_id, endpoint_id, before, after))
    return endpoint


async def delete_endpoint(session: AsyncSession, principal: Principal, endpoint_id: int) -> WebhookEndpoint:
    """Deleted with its deliveries (their history goes with it)."""
    endpoint = await endpoint_in_scope(session, principal, endpoint_id)
    await OutgoingWebhookRepository(session, Scope.of(principal)).delete_endpoint(endpoint)
    events.record(
        session, events.WebhookEndpointChanged(endpoint.account_id, endpoint_id, _audited(endpoint), None)
    )
    return endpoint


async def rotate_secret(
    session: AsyncSession, principal: Principal, endpoint_id: int, *, now: datetime
) -> WebhookEndpoint:
    """A new secret at once: deliveries still pending are signed with it when they are sent."""
    endpoint = await endpoint_in_scope(session, principal, endpoint_id)
    endpoint.secret = new_secret()
    endpoint.updated_at = now
    await session.flush()
    events.record(session, events.WebhookSecretRotated(endpoint.account_id, endpoint_id))
    return endpoint


async def send_test(
    session: AsyncSession, principal: Principal, endpoint_id: int, *, now: datetime
) -> WebhookDelivery:
    """A `webhook.test` delivery queued for the endpoint (sent by the worker like any other, in its turn)."""
    endpoint = await endpoint_in_scope(session, principal, endpoint_id)
    assert endpoint.id is not None
    key = f"test-{secrets.token_hex(8)}"
    delivery = WebhookDelivery(
        account_id=endpoint.account_id,
        endpoint_id=endpoint.id,
        event_type=TEST_EVENT,
        event_key=key,
        webhook_id=f"msg_{endpoint.id}_{key}",
        payload=payload(
            TEST_EVENT,
            now,
            {
                "account_id": _account(endpoint.account_id),
                "webhook_endpoint_id": to_global_id("WebhookEndpoint", endpoint.id),
            },
        ),
        next_attempt_at=now,
        created_at=now,
    )
    await OutgoingWebhookRepository(session, Scope.of(principal)).add(delivery)
    return delivery


# --- reads (the account was found through the caller's scope) ---------------------------------------------

_DELIVERY_CURSOR = "webhook_delivery"


async def endpoints_of(session: AsyncSession, scope: Scope, account_id: int) -> list[WebhookEndpoint]:
    """The account's endpoints, oldest first (at most MAX_ENDPOINTS_PER_ACCOUNT); none outside the scope."""
    return await OutgoingWebhookRepository(session, scope).endpoints_of(account_id)


def delivery_cursor(delivery: WebhookDelivery) -> str:
    return encode_cursor(_DELIVERY_CURSOR, str(delivery.id))


async def deliveries_of(
    session: AsyncSession, scope: Scope, account_id: int, *, first: int, after: str | None
) -> Page[WebhookDelivery]:
    """The account's deliveries, newest first, by keyset on the id (index (account_id, id)); none outside the
    scope."""
    check_page_size(first)
    before_id = None
    if after is not None:
        [last_id] = decode_cursor(after, _DELIVERY_CURSOR, 1)
        before_id = cursor_row_id(last_id)
    rows = await OutgoingWebhookRepository(session, scope).deliveries_of(
        account_id, before_id=before_id, limit=first + 1
    )
    return Page(items=rows[:first], has_next=len(rows) > first)


# --- cards about to expire (a periodic check of the worker) ----------------------------------------------

EXPIRING_WITHIN = timedelta(days=30)


def _month_index(moment: datetime) -> int:
    return moment.year * 12 + moment.month - 1


async def queue_expiring_cards(session: AsyncSession, scope: Scope, *, now: datetime) -> int:
    """`payment_method.expiring` for every card that expires within 30 days, to its account's subscribed
    endpoints, once per card and month (the event key carries both; a repeat is skipped ON CONFLICT).

    A card is valid through the end of its expiry month (UTC): it expires within 30 days when that month is
    this one or a later one whose end is no further than 30 days away. Returns how many were queued."""
    first, last = _month_index(now), _month_index(now + EXPIRING_WITHIN) - 1
    if last < first:
        return 0
    repository = OutgoingWebhookRepository(session, scope)
    rows = []
    for card, endpoint_id in await repository.cards_expiring_to_subscribers(
        first, last, PAYMENT_METHOD_EXPIRING
    ):
        key = f"{PAYMENT_METHOD_EXPIRING}-{card.id}-{now:%Y-%m}"
        assert card.id is not None
        data = {
            "account_id": _account(card.account_id),
            "payment_method_id": to_global_id("PaymentMethod", card.id),
            "brand": card.brand,
            "last4": card.last4,
            "exp_month": card.exp_month,
            "exp_year": card.exp_year,
        }
        rows.append(
            {
                "account_id": card.account_id,
                "endpoint_id": endpoint_id,
                "event_type": PAYMENT_METHOD_EXPIRING,
                "event_key": key,
                "webhook_id": f"msg_{endpoint_id}_{key}",
                "payload": payload(PAYMENT_METHOD_EXPIRING, now, data),
                "status": WebhookDeliveryStatus.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
        )
    if not rows:
        return 0
    return await repository.queue_new(rows)
