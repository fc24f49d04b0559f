"""The ledger: the only code that changes a balance.

Every posting locks the account row (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite serialises writers), appends
an entry and moves the stored balance in the same transaction. Entries never change amount; a pending entry is
settled once, and a settled one never moves again. Balance == sum of succeeded entries, always.
"""

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.errors import NotFound
from models import Account, Transaction, TransactionKind, TransactionStatus
from models.types import utcnow


@dataclass(frozen=True)
class Posting:
    transaction: Transaction
    created: bool  # False when the idempotency key had already been posted


async def lock_account(session: AsyncSession, account_id: int) -> Account:
    """The account row, locked until the transaction ends, with a fresh balance."""
    statement = (
        select(Account)
        .where(Account.id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    account = (await session.exec(statement)).first()
    if account is None:
        raise NotFound(f"account {account_id} not found")
    return account


async def find_by_idempotency_key(session: AsyncSession, account_id: int, key: str) -> Transaction | None:
    statement = select(Transaction).where(
        Transaction.account_id == account_id, Transaction.idempotency_key == key
    )
    return (await session.exec(statement)).first()


async def post(
    session: AsyncSession,
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
    account = await lock_account(session, account_id)
    existing = await find_by_idempotency_key(session, account_id, idempotency_key)
    if existing is not None:
        return Posting(existing, created=False)
    now = utcnow()
    entry = Transaction(
        account_id=account_id,
        kind=kind,
        status=status,
        amount_minor=amount_minor,
        currency=account.currency,
        description=description,
        idempotency_key=idempotency_key,
        payment_method_id=payment_method_id,
        stripe_payment_intent_id=stripe_payment_intent_id,
        reverses_id=reverses_id,
        created_at=now,
        settled_at=now if status is TransactionStatus.SUCCEEDED else None,
    )
    session.add(entry)
    if status is TransactionStatus.SUCCEEDED:
        account.balance_minor += amount_minor
    await session.flush()
    return Posting(entry, created=True)


async def settle(
    session: AsyncSession,
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
    entry = await session.get(Transaction, transaction_id)
    if entry is None:
        raise NotFound(f"transaction {transaction_id} not found")
    account = await lock_account(session, entry.account_id)
    await session.refresh(entry)  # re-read under the lock: another process may have settled it meanwhile
    if entry.status != TransactionStatus.PENDING:
        return entry
    entry.status = status
    entry.settled_at = utcnow()
    entry.failure_code = failure_code
    entry.failure_message = failure_message
    if stripe_payment_intent_id is not None:
        entry.stripe_payment_intent_id = stripe_payment_intent_id
    if status is TransactionStatus.SUCCEEDED:
        account.balance_minor += entry.amount_minor
    await session.flush()
    return entry


async def reverse(
    session: AsyncSession,
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
        account_id=original.account_id,
        kind=kind,
        amount_minor=amount_minor,
        description=description,
        idempotency_key=idempotency_key,
        reverses_id=original.id,
    )


async def succeeded_sum(session: AsyncSession, account_id: int) -> int:
    """What the balance must be: the sum of the account's succeeded entries."""
    statement = select(func.coalesce(func.sum(Transaction.amount_minor), 0)).where(
        Transaction.account_id == account_id, col(Transaction.status) == TransactionStatus.SUCCEEDED
    )
    return int((await session.exec(statement)).one())
