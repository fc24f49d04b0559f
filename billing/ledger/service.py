"""The ledger: the only code that changes a balance.

Every posting locks its accounts' rows (`SELECT ... FOR UPDATE` on PostgreSQL, in id order; SQLite serialises
writers), appends its entries and moves the stored balances in the same transaction. Entries never change
amount; a pending entry is settled once, and a settled one never moves again. Balance == sum of succeeded
entries, always. A posting never takes a balance beyond ±MAX_BALANCE_MINOR (BalanceOutOfRange, nothing written).

Each posting records its domain events in the same transaction (billing/events/service.py): every entry created and
settled, and every balance it moves (turned at commit into one balance event per account, and a funding-state
event when the account crossed a boundary). Recording writes nothing until the commit, so the statements here
stay as few as before. Every statement runs through billing/ledger/repository.py, for the caller's scope.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.errors import DomainError, NotFound
from billing.events import service as events
from billing.ledger.repository import LedgerRepository
from billing.money import format_money
from billing.scope import Scope
from models import Account, Transaction, TransactionKind, TransactionStatus
from models.types import utcnow

# The widest a stored balance may get, either way: 10^13 units of a two-decimal currency is beyond any account,
# and far enough inside the 64-bit columns (9.2 x 10^18) that sums of balances and rollups cannot overflow. The
# inputs keep real postings far from it (a top-up is at most Settings.max_top_up_minor, a usage event at most
# usage.MAX_COST_PER_EVENT); this stops what they add up to over time.
MAX_BALANCE_MINOR = 10**15


class BalanceOutOfRange(DomainError):
    """A posting would take a balance beyond ±MAX_BALANCE_MINOR; nothing of it was written."""

    def __init__(self, currency: str, after: int) -> None:
        side, bound = ("above", MAX_BALANCE_MINOR) if after > 0 else ("below", -MAX_BALANCE_MINOR)
        super().__init__(
            f"this would take the balance {side} {format_money(bound, currency)}, beyond what an account may"
            " hold; nothing was posted"
        )


def leaves_range(before: int, after: int) -> bool:
    """Whether moving a balance from `before` to `after` takes it beyond ±MAX_BALANCE_MINOR, or further beyond.
    A balance stored out of range before this bound existed may still move back towards it."""
    return abs(after) > MAX_BALANCE_MINOR and abs(after) > abs(before)


@dataclass(frozen=True)
class NewEntry:
    account_id: int
    kind: TransactionKind
    amount_minor: int
    description: str
    idempotency_key: str
    status: TransactionStatus = TransactionStatus.SUCCEEDED
    payment_method_id: int | None = None
    stripe_payment_intent_id: str | None = None
    reverses_id: int | None = None


@dataclass(frozen=True)
class Posting:
    transaction: Transaction
    created: bool  # False when the idempotency key had already been posted


async def lock_accounts(
    session: AsyncSession, scope: Scope, account_ids: Iterable[int]
) -> dict[int, Account]:
    """The accounts found within the scope, locked until the transaction ends (in id order, the order every
    writer takes them in, so writers of overlapping accounts never deadlock), with fresh balances."""
    return await LedgerRepository(session, scope).lock_accounts(account_ids)


async def lock_account(session: AsyncSession, scope: Scope, account_id: int) -> Account:
    """The account row, locked until the transaction ends, with a fresh balance."""
    account = (await lock_accounts(session, scope, [account_id])).get(account_id)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    return account


async def find_by_idempotency_key(
    session: AsyncSession, scope: Scope, account_id: int, key: str
) -> Transaction | None:
    return await LedgerRepository(session, scope).by_idempotency_key(account_id, key)


async def post(
    session: AsyncSession,
    scope: Scope,
    *,
    account_id: int,
    kind: TransactionKind,
    amount_minor: int,
    description: str,
    idempotency_key: str,
    status: TransactionStatus = TransactionStatus.SUCCEEDED,
    payment_method_id: int | None = None,
    stripe_payment_intent_id: str | None = None,
    reverses_id: int | None = None,
) -> Posting:
    """Append an entry once per idempotency key; a succeeded entry moves the balance at once."""
    entry = NewEntry(
        account_id=account_id,
        kind=kind,
        amount_minor=amount_minor,
        description=description,
        idempotency_key=idempotency_key,
        status=status,
        payment_method_id=payment_method_id,
        stripe_payment_intent_id=stripe_payment_intent_id,
        reverses_id=reverses_id,
    )
    return (await post_many(session, scope, [entry]))[0]


async def post_many(session: AsyncSession, scope: Scope, entries: Sequence[NewEntry]) -> list[Posting]:
    """Append each entry once per (account, idempotency key); succeeded ones move their balances at once.

    One posting per entry, in order: a key posted before, or earlier in `entries`, gives that entry and moves
    nothing. At most four statements, however many accounts and entries: lock the accounts, look up the keys,
    insert the new entries, update the balances.
    """
    if not entries:
        return []
    repository = LedgerRepository(session, scope)
    wanted = {entry.account_id for entry in entries}
    accounts = await repository.lock_accounts(wanted)
    if missing := wanted - accounts.keys():
        raise NotFound(f"account {min(missing)} not found")
    existing = await _posted(repository, entries)
    fresh: dict[tuple[int, str], NewEntry] = {}
    for entry in entries:
        if _key(entry) not in existing:
            fresh.setdefault(_key(entry), entry)
    _check_ranges(accounts, fresh.values())
    created = await _insert(repository, list(fresh.values()), accounts, utcnow())
    await _move_balances(repository, accounts, created.values())
    postings = []
    for entry in entries:
        key = _key(entry)
        if (transaction := created.pop(key, None)) is not None:
            existing[key] = transaction  # a repeat later in `entries` finds it posted
            postings.append(Posting(transaction, created=True))
        else:
            postings.append(Posting(existing[key], created=False))
    return postings


def _check_ranges(accounts: dict[int, Account], entries: Iterable[NewEntry]) -> None:
    """Each balance after each new entry, in order; a pending entry counts as if it succeeded, so a top-up
    that could not be credited is refused before its card is charged."""
    balances = {account_id: account.balance_minor for account_id, account in accounts.items()}
    for entry in entries:
        before = balances[entry.account_id]
        after = balances[entry.account_id] = before + entry.amount_minor
        if leaves_range(before, after):
            raise BalanceOutOfRange(accounts[entry.account_id].currency, after)


def _key(entry: NewEntry | Transaction) -> tuple[int, str]:
    return entry.account_id, entry.idempotency_key


async def _posted(
    repository: LedgerRepository, entries: Sequence[NewEntry]
) -> dict[tuple[int, str], Transaction]:
    """The entries already posted under these (account, idempotency key) pairs: one statement."""
    found = await repository.by_idempotency_keys(
        {entry.account_id for entry in entries}, {entry.idempotency_key for entry in entries}
    )
    wanted = {_key(entry) for entry in entries}
    return {_key(t): t for t in found if _key(t) in wanted}


async def _insert(
    repository: LedgerRepository, entries: Sequence[NewEntry], accounts: dict[int, Account], now: datetime
) -> dict[tuple[int, str], Transaction]:
    """One multi-row INSERT ... RETURNING; the new entries join the session, found by their unique key."""
    if not entries:
        return {}
    rows = [
        {
            "account_id": entry.account_id,
            "kind": entry.kind,
            "status": entry.status,
            "amount_minor": entry.amount_minor,
            "currency": accounts[entry.account_id].currency,
            "description": entry.description,
            "idempotency_key": entry.idempotency_key,
            "payment_method_id": entry.payment_method_id,
            "stripe_payment_intent_id": entry.stripe_payment_intent_id,
            "reverses_id": entry.reverses_id,
            "created_at": now,
            "settled_at": now if entry.status is TransactionStatus.SUCCEEDED else None,
        }
        for entry in entries
    ]
    # Matched by key, not by position: ordered RETURNING would cost SQLite one INSERT per row.
    created = {_key(t): t for t in await repository.insert_entries(rows)}
    events.record(repository.session, *(_created_event(t) for t in created.values()))
    return created


def _created_event(entry: Transaction) -> events.TransactionCreated:
    assert entry.id is not None
    return events.TransactionCreated(
        account_id=entry.account_id,
        transaction_id=entry.id,
        kind=TransactionKind(entry.kind),
        status=TransactionStatus(entry.status),
        amount_minor=entry.amount_minor,
        currency=entry.currency,
    )


async def _move_balances(
    repository: LedgerRepository, accounts: dict[int, Account], entries: Iterable[Transaction]
) -> None:
    """One UPDATE adding each account's new succeeded entries; the session's Account objects follow it."""
    deltas: dict[int, int] = defaultdict(int)
    for entry in entries:
        if entry.status == TransactionStatus.SUCCEEDED:
            deltas[entry.account_id] += entry.amount_minor
    if not deltas:
        return
    await repository.add_to_balances(deltas)
    for account_id, moved in deltas.items():
        account = accounts[account_id]  # read under the lock, so this is what the row now holds
        before = account.balance_minor
        # Already written: the object learns its new value without it becoming a change to flush.
        set_committed_value(account, "balance_minor", before + moved)
        events.balance_moved(repository.session, account_id, account.currency, before, before + moved)


async def settle(
    session: AsyncSession,
    scope: Scope,
    transaction_id: int,
    status: TransactionStatus,
    *,
    failure_code: str | None = None,
    failure_message: str | None = None,
    stripe_payment_intent_id: str | None = None,
) -> Transaction:
    """Move a pending entry to its final status exactly once; a settled entry is returned unchanged."""
    if status is TransactionStatus.PENDING:
        raise ValueError("settle needs a final status")
    repository = LedgerRepository(session, scope)
    entry = await repository.entry(transaction_id)
    if entry is None:
        raise NotFound(f"transaction {transaction_id} not found")
    account = await lock_account(session, scope, entry.account_id)
    await repository.reread(entry)  # under the lock: another process may have settled it meanwhile
    if entry.status != TransactionStatus.PENDING:
        return entry
    after = account.balance_minor + entry.amount_minor
    if status is TransactionStatus.SUCCEEDED and leaves_range(account.balance_minor, after):
        raise BalanceOutOfRange(account.currency, after)
    entry.status = status
    entry.settled_at = utcnow()
    entry.failure_code = failure_code
    entry.failure_message = failure_message
    if stripe_payment_intent_id is not None:
        entry.stripe_payment_intent_id = stripe_payment_intent_id
    if status is TransactionStatus.SUCCEEDED:
        before = account.balance_minor
        account.balance_minor += entry.amount_minor
        events.balance_moved(session, entry.account_id, account.currency, before, account.balance_minor)
    await repository.flush()
    assert entry.id is not None
    events.record(
        session,
        events.TransactionSettled(
            account_id=entry.account_id,
            transaction_id=entry.id,
            kind=TransactionKind(entry.kind),
            status=status,
            amount_minor=entry.amount_minor,
            currency=entry.currency,
            failure_code=failure_code,
        ),
    )
    return entry


async def reverse(
    session: AsyncSession,
    scope: Scope,
    original: Transaction,
    *,
    kind: TransactionKind,
    amount_minor: int,
    description: str,
    idempotency_key: str,
) -> Posting:
    """A correction: a new succeeded entry of `amount_minor` (opposite sign to the original) that points at it."""
    if original.id is None or (amount_minor > 0) == (original.amount_minor > 0):
        raise ValueError("a reversal has the opposite sign of the entry it reverses")
    return await post(
        session,
        scope,
        account_id=original.account_id,
        kind=kind,
        amount_minor=amount_minor,
        description=description,
        idempotency_key=idempotency_key,
        reverses_id=original.id,
    )


async def succeeded_sum(session: AsyncSession, scope: Scope, account_id: int) -> int:
    """What the balance must be: the sum of the account's succeeded entries."""
    return await LedgerRepository(session, scope).succeeded_sum(account_id)
