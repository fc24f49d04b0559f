"""The ledger: idempotent posting, settling once, and balance == sum of succeeded entries."""

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import ledger
from billing.db import session_factory, unit_of_work
from models import Account, TransactionKind, TransactionStatus
from tests.factories import create_account
from tests.ledger_checks import checked_balance


async def post_top_up(
    session: AsyncSession, account: Account, amount: int, key: str, **kw: object
) -> ledger.Posting:
    assert account.id is not None
    return await ledger.post(
        session,
        account_id=account.id,
        kind=TransactionKind.TOP_UP,
        amount_minor=amount,
        description="Top-up",
        idempotency_key=key,
        **kw,  # type: ignore[arg-type]
    )


async def test_succeeded_posting_moves_the_balance(session: AsyncSession) -> None:
    account = await create_account(session)
    await post_top_up(session, account, 1_000, "a")
    await post_top_up(session, account, -250, "b")
    assert account.balance_minor == 750
    await checked_balance(session, account)


async def test_same_idempotency_key_posts_once(session: AsyncSession) -> None:
    account = await create_account(session)
    first = await post_top_up(session, account, 1_000, "same")
    second = await post_top_up(session, account, 1_000, "same")
    assert first.created and not second.created
    assert second.transaction.id == first.transaction.id
    assert account.balance_minor == 1_000
    await checked_balance(session, account)


async def test_pending_counts_only_once_settled_and_settles_once(session: AsyncSession) -> None:
    account = await create_account(session)
    posting = await post_top_up(session, account, 2_000, "p", status=TransactionStatus.PENDING)
    assert account.balance_minor == 0
    entry_id = posting.transaction.id
    assert entry_id is not None
    await ledger.settle(session, entry_id, TransactionStatus.SUCCEEDED)
    again = await ledger.settle(session, entry_id, TransactionStatus.FAILED, failure_code="late")
    assert again.status == TransactionStatus.SUCCEEDED and again.failure_code is None
    assert account.balance_minor == 2_000
    await checked_balance(session, account)


async def test_failed_settlement_leaves_the_balance(session: AsyncSession) -> None:
    account = await create_account(session)
    posting = await post_top_up(session, account, 2_000, "f", status=TransactionStatus.PENDING)
    assert posting.transaction.id is not None
    entry = await ledger.settle(
        session, posting.transaction.id, TransactionStatus.FAILED, failure_code="card_declined"
    )
    assert entry.status == TransactionStatus.FAILED and account.balance_minor == 0
    await checked_balance(session, account)


async def test_reversal_is_a_new_entry(session: AsyncSession) -> None:
    account = await create_account(session)
    original = (await post_top_up(session, account, 1_500, "o")).transaction
    reversal = await ledger.reverse(
        session,
        original,
        kind=TransactionKind.REFUND,
        amount_minor=-1_500,
        description="Refund",
        idempotency_key="refund:o",
    )
    assert reversal.transaction.reverses_id == original.id
    assert original.amount_minor == 1_500 and account.balance_minor == 0
    await checked_balance(session, account)


@pytest.mark.postgres_only
async def test_100_concurrent_postings_keep_the_invariant(committing_engine: AsyncEngine) -> None:
    factory = session_factory(committing_engine)
    async with unit_of_work(factory) as session:
        account = await create_account(session)
    assert account.id is not None
    account_id = account.id

    def key_of(index: int) -> int:
        # Every tenth posting repeats an earlier key: those must be applied once.
        return index - 9 if index % 10 == 9 else index

    async def one(index: int) -> None:
        async with unit_of_work(factory) as session:
            await ledger.post(
                session,
                account_id=account_id,
                kind=TransactionKind.ADJUSTMENT,
                amount_minor=100 + key_of(index),
                description="concurrent",
                idempotency_key=f"k{key_of(index)}",
            )

    await asyncio.gather(*(one(i) for i in range(100)))
    async with unit_of_work(factory) as session:
        assert await checked_balance(session, account_id) == sum(
            100 + key for key in {key_of(i) for i in range(100)}
        )
