"""Domain events: changes worth telling someone about, recorded in the same transaction as the change.

Services call `record(session, event)` (and the ledger `balance_moved`) while they change things; nothing is
written then. When the transaction commits, its events are written by one INSERT just before the COMMIT, in the
same transaction, so they exist exactly when the change does: a rollback leaves neither. After the commit
succeeds they are handed to this process's listeners (`subscribe`); a rollback hands them nothing. Other
processes and reconnecting clients read them by cursor (billing/events/repository.py); on PostgreSQL the commit also
NOTIFYs `CHANNEL` with the accounts concerned, so a process that LISTENs learns of it at once.

Ids follow commit order, so a cursor never skips an event: on SQLite a writer holds the write lock until it
commits; on PostgreSQL the commit takes a transaction-level advisory lock before its events get their ids and
holds it through the COMMIT. That lock is the last one such a transaction takes (the INSERT locks no other row),
so it never deadlocks; it makes commits that carry events follow one another.

Balance and funding-state events are one per account per transaction, however many postings moved it: the
ledger reports each move, and the commit turns the first "before" and last "after" into `BalanceChanged` and,
when the funding state differs, `FundingStateChanged` (one statement reads the accounts' auto-recharge
thresholds). The default low-balance threshold comes with the engine (see `engine_options`).

Events are plain dataclasses, serialised to JSON only here (`to_json`, `from_json`); secrets never go in one.
"""

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import TypeAdapter
from sqlalchemy import Connection, event
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.funding import FundingState, funding_state
from billing.audit.actors import current_actor
from billing.config import Settings
from billing.observability.request import current_request_id
from billing.scope import Scope
from models import AutoRechargeState, TransactionKind, TransactionStatus
from models.types import utcnow

if TYPE_CHECKING:
    from billing.events.repository import CommitRepository

logger = logging.getLogger(__name__)

# The PostgreSQL channel a commit with events notifies; the payload is the accounts' ids, comma-separated
# ("*" when too many to list: a listener then catches up on every account it follows).
CHANNEL = "billing_domain_events"
# NOTIFY payloads must stay under 8000 bytes.
_MAX_NOTIFY_PAYLOAD = 7_900
# The advisory lock that keeps event ids in commit order (an arbitrary constant, used for nothing else).
_COMMIT_ORDER_LOCK = 0x6269_6C6C_6576  # "billev"
# The engine's execution option naming the default low-balance threshold (see `engine_options`).
LOW_BALANCE_THRESHOLD_OPTION = "billing_low_balance_threshold_minor"
# session.info keys.
_PENDING_KEY = "billing.events.service.pending"
_MOVES_KEY = "billing.events.service.balance_moves"
_WRITTEN_KEY = "billing.events.service.written"

# Before/after values of settings: JSON scalars only.
Snapshot = Mapping[str, str | int | bool | None]


@dataclass(frozen=True)
class BalanceChanged:
    type: ClassVar[str] = "balance.changed"
    account_id: int
    currency: str
    before_minor: int
    after_minor: int


@dataclass(frozen=True)
class FundingStateChanged:
    type: ClassVar[str] = "funding_state.changed"
    account_id: int
    before: FundingState
    after: FundingState
    balance_minor: int


@dataclass(frozen=True)
class _LedgerEntry:
    """What both events of a ledger entry carry."""

    account_id: int
    transaction_id: int
    kind: TransactionKind
    status: TransactionStatus
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class TransactionCreated(_LedgerEntry):
    type: ClassVar[str] = "transaction.created"


@dataclass(frozen=True)
class TransactionSettled(_LedgerEntry):
    """A pending entry reached its final status (succeeded, failed or canceled)."""

    type: ClassVar[str] = "transaction.settled"
    failure_code: str | None


def snapshot(row: SQLModel, fields: Iterable[str]) -> Snapshot:
    """The named fields of a row, for a settings event's before/after."""
    return {name: getattr(row, name) for name in fields}


@dataclass(frozen=True)
class AutoRechargeSettingsChanged:
    type: ClassVar[str] = "auto_recharge.settings_changed"
    # What the customer sets; never the 3-D Secure client secret, nor the engine's failure count.
    FIELDS: ClassVar[tuple[str, ...]] = (
        "enabled",
        "threshold_minor",
        "amount_minor",
        "monthly_limit_minor",
        "payment_method_id",
    )
    account_id: int
    before: Snapshot | None  # None: never saved before
    after: Snapshot


@dataclass(frozen=True)
class CompanyChanged:
    type: ClassVar[str] = "company.changed"
    FIELDS: ClassVar[tuple[str, ...]] = (
        "legal_name",
        "registration_number",
        "vat_id",
        "phone",
        "address_line1",
        "address_line2",
        "city",
        "postal_code",
        "region",
        "country",
    )
    account_id: int
    before: Snapshot | None  # None: no profile before
    after: Snapshot


@dataclass(frozen=True)
class _Card:
    """What both events of a saved card carry."""

    account_id: int
    payment_method_id: int
    brand: str
    last4: str


@dataclass(frozen=True)
class PaymentMethodAdded(_Card):
    type: ClassVar[str] = "payment_method.added"
    is_default: bool


@dataclass(frozen=True)
class PaymentMethodRemoved(_Card):
    type: ClassVar[str] = "payment_method.removed"


@dataclass(frozen=True)
class DefaultPaymentMethodChanged:
    type: ClassVar[str] = "payment_method.default_changed"
    account_id: int
    before_id: int | None
    after_id: int


@dataclass(frozen=True)
class LeadPlanChanged:
    type: ClassVar[str] = "lead_plan.changed"
    FIELDS: ClassVar[tuple[str, ...]] = (
        "name",
        "status",
        "monthly_budget_minor",
        "price_per_lead_minor",
        "currency",
    )
    account_id: int
    lead_plan_id: int
    before: Snapshot | None  # None: created
    after: Snapshot


@dataclass(frozen=True)
class ApiKeyCreated:
    """A key that acts on this account: a member key of it, or a key of a partner that manages it (one event
    per account the partner manages then). Never the key's secret or its hash."""

    type: ClassVar[str] = "api_key.created"
    account_id: int
    api_key_id: int
    name: str
    prefix: str
    kind: str


@dataclass(frozen=True)
class ApiKeyRevoked:
    type: ClassVar[str] = "api_key.revoked"
    account_id: int
    api_key_id: int
    name: str
    prefix: str
    kind: str


@dataclass(frozen=True)
class WebhookEndpointChanged:
    """An outgoing webhook endpoint created (`before` None), changed, or deleted (`after` None). Never its
    signing secret: a new one is `WebhookSecretRotated`."""

    type: ClassVar[str] = "webhook_endpoint.changed"
    FIELDS: ClassVar[tuple[str, ...]] = ("url", "description", "event_types", "status")
    account_id: int
    webhook_endpoint_id: int
    before: Snapshot | None
    after: Snapshot | None


@dataclass(frozen=True)
class WebhookSecretRotated:
    type: ClassVar[str] = "webhook_endpoint.secret_rotated"
    account_id: int
    webhook_endpoint_id: int


@dataclass(frozen=True)
class AutoRechargeHalted:
    """The engine stopped recharging until the customer acts: its bank asked for 3-D Secure (`action_required`)
    or it was suspended after declines (`suspended`). Never the 3-D Secure client secret."""

    type: ClassVar[str] = "auto_recharge.halted"
    account_id: int
    state: AutoRechargeState
    reason: str


@dataclass(frozen=True)
class LeadBudgetReached:
    """Usage carried one lead plan's spending in a month from below its monthly budget to at least it: recorded
    by the batch that crossed it."""

    type: ClassVar[str] = "lead_plan.budget_reached"
    account_id: int
    lead_plan_id: int
    month: str  # YYYY-MM in the account's time zone
    budget_minor: int
    spent_minor: int
    currency: str


DomainEvent = (
    BalanceChanged
    | FundingStateChanged
    | TransactionCreated
    | TransactionSettled
    | AutoRechargeHalted
    | LeadBudgetReached
    | AutoRechargeSettingsChanged
    | CompanyChanged
    | PaymentMethodAdded
    | PaymentMethodRemoved
    | DefaultPaymentMethodChanged
    | LeadPlanChanged
    | ApiKeyCreated
    | ApiKeyRevoked
    | WebhookEndpointChanged
    | WebhookSecretRotated
)
_EVENT_TYPES: dict[str, type[DomainEvent]] = {
    kind.type: kind
    for kind in (
        BalanceChanged,
        FundingStateChanged,
        TransactionCreated,
        TransactionSettled,
        AutoRechargeHalted,
        LeadBudgetReached,
        AutoRechargeSettingsChanged,
        CompanyChanged,
        PaymentMethodAdded,
        PaymentMethodRemoved,
        DefaultPaymentMethodChanged,
        LeadPlanChanged,
        ApiKeyCreated,
        ApiKeyRevoked,
        WebhookEndpointChanged,
        WebhookSecretRotated,
    )
}


@dataclass(frozen=True)
class StoredEvent:
    """An event as committed: its id is the cursor to read on from."""

    id: int
    occurred_at: datetime
    event: DomainEvent

    @property
    def account_id(self) -> int:
        return self.event.account_id


# Serialisation lives here only: pydantic checks a payload against its event's fields on the way back.
_ADAPTERS: dict[str, TypeAdapter[Any]] = {name: TypeAdapter(kind) for name, kind in _EVENT_TYPES.items()}


def to_json(domain_event: DomainEvent) -> dict[str, Any]:
    """The event's fields as JSON values (enums as their values); its type is stored beside them."""
    payload: dict[str, Any] = _ADAPTERS[domain_event.type].dump_python(domain_event, mode="json")
    return payload


def from_json(event_type: str, payload: dict[str, Any]) -> DomainEvent:
    """The typed event back from what `to_json` wrote; an unknown type or a bad payload raises."""
    domain_event: DomainEvent = _ADAPTERS[event_type].validate_python(payload)
    return domain_event


def engine_options(settings: Settings) -> dict[str, Any]:
    """Execution options for the engine (`billing.db.engine_from_settings`): the default low-balance threshold
    the commit needs for funding state. They travel with every connection, so every session of a process built
    from settings sees them; an engine without them uses the settings' default."""
    return {LOW_BALANCE_THRESHOLD_OPTION: settings.low_balance_threshold_minor}


def record(session: AsyncSession, *events: DomainEvent) -> None:
    """Record events of the transaction `session` is in; they are written when (and only if) it commits."""
    _pending(_guarded(session)).extend(events)


def balance_moved(
    session: AsyncSession, account_id: int, currency: str, before_minor: int, after_minor: int
) -> None:
    """The ledger moved an account's stored balance; the commit records one BalanceChanged per account."""
    moves: dict[int, tuple[str, int, int]] = _guarded(session).info.setdefault(_MOVES_KEY, {})
    first_before = moves[account_id][1] if account_id in moves else before_minor
    moves[account_id] = (currency, first_before, after_minor)


# In-process publish/subscribe: listeners get each commit's events right after the COMMIT succeeded.
Listener = Callable[[Sequence[StoredEvent]], None]


class EventBus:
    """Listeners are called in the committing task and must not block (hand off to a queue); one that raises
    is logged and the others still get the events: the commit has already happened."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Start calling `listener`; the returned function stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, events: Sequence[StoredEvent]) -> None:
        for listener in list(self._listeners):
            try:
                listener(events)
            except Exception:
                logger.exception("domain event listener %r failed", listener)


bus = EventBus()
subscribe = bus.subscribe
publish = bus.publish

# Called in the committing transaction with the events just written, before the COMMIT: what must exist
# exactly when they do (the outgoing webhooks' outbox, billing/outgoing_webhooks/service.py) is written there.
Writer = Callable[[Connection, Sequence[StoredEvent]], None]
_writers: list[Writer] = []


def on_write(writer: Writer) -> None:
    _writers.append(writer)


def _guarded(session: AsyncSession) -> Session:
    sync_session = session.sync_session
    # A savepoint that rolls back would have to take its events along; no service uses savepoints, so none.
    if sync_session.in_nested_transaction():
        raise RuntimeError("domain events cannot be recorded inside a savepoint")
    return sync_session


def _pending(session: Session) -> list[DomainEvent]:
    pending: list[DomainEvent] = session.info.setdefault(_PENDING_KEY, [])
    return pending


def _repository(session: Session) -> "CommitRepository":
    # Imported here: the repository reads StoredEvent from this module.
    from billing.events.repository import CommitRepository

    return CommitRepository(session, Scope.system("a commit writes the events of the accounts it changed"))


def _stored(row: Sequence[Any]) -> StoredEvent:
    """From (id, type, payload, occurred_at), as the INSERT returns them."""
    event_id, event_type, payload, occurred_at = row
    return StoredEvent(id=event_id, occurred_at=occurred_at, event=from_json(event_type, payload))


def _balance_events(session: Session) -> list[DomainEvent]:
    """One BalanceChanged per account the transaction moved, and FundingStateChanged where the state moved."""
    moves: dict[int, tuple[str, int, int]] = session.info.pop(_MOVES_KEY, {})
    moved = {account_id: move for account_id, move in moves.items() if move[1] != move[2]}
    if not moved:
        return []
    settings = _repository(session).auto_recharge_settings(moved)
    default_low = int(
        session.connection()
        .get_execution_options()
        .get(LOW_BALANCE_THRESHOLD_OPTION, Settings.model_fields["low_balance_threshold_minor"].default)
    )
    events: list[DomainEvent] = []
    for account_id, (currency, before, after) in sorted(moved.items()):
        events.append(BalanceChanged(account_id, currency, before, after))
        was = funding_state(before, settings.get(account_id), default_low)
        now = funding_state(after, settings.get(account_id), default_low)
        if was != now:
            events.append(FundingStateChanged(account_id, was, now, after))
    return events


def _notify_payload(account_ids: set[int]) -> str:
    listed = ",".join(str(account_id) for account_id in sorted(account_ids))
    return listed if len(listed) <= _MAX_NOTIFY_PAYLOAD else "*"


@event.listens_for(Session, "before_commit")
def _write(session: Session) -> None:
    """Just before COMMIT, in the committing transaction: write its events (one INSERT) and NOTIFY."""
    if session.in_nested_transaction():
        return  # a savepoint's release: the events wait for the real COMMIT
    events = [*session.info.pop(_PENDING_KEY, []), *_balance_events(session)]
    if not events:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # NOTIFY is delivered at COMMIT, and not at all on rollback.
        payload = _notify_payload({e.account_id for e in events})
        _repository(session).lock_commit_order_and_notify(_COMMIT_ORDER_LOCK, CHANNEL, payload)
    now = utcnow()
    # Who and from where, for the audit trail (billing/audit/service.py): the actor and request the commit runs in.
    actor = current_actor()
    stamp = {
        "actor_kind": actor.kind,
        "actor_name": actor.name,
        "actor_key_prefix": actor.key_prefix,
        "request_id": current_request_id(),
    }
    rows = [
        {"account_id": e.account_id, "type": e.type, "payload": to_json(e), "occurred_at": now, **stamp}
        for e in events
    ]
    # Rows come back in no guaranteed order: sorted by id, which is insertion (and commit) order.
    written = sorted((_stored(row) for row in _repository(session).insert(rows)), key=lambda s: s.id)
    session.info[_WRITTEN_KEY] = written
    for writer in _writers:
        writer(connection, written)


@event.listens_for(Session, "after_commit")
def _publish(session: Session) -> None:
    if session.in_nested_transaction():
        return
    written: list[StoredEvent] = session.info.pop(_WRITTEN_KEY, [])
    if written:
        publish(written)


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: SessionTransaction) -> None:
    """Whatever the transaction did not commit (a rollback, a close) is forgotten with it; a savepoint's end is
    not the transaction's."""
    if transaction.parent is None:
        for key in (_PENDING_KEY, _MOVES_KEY, _WRITTEN_KEY):
            session.info.pop(key, None)
