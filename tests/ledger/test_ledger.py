"""The ledger: idempotent posting, settling once, and balance == sum of succeeded entries."""

import asyncio
from dataclasses import replace

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.db import session_factory, unit_of_work
from billing.errors import NotFound
from billing.ledger import service as ledger
from models import Account, TransactionKind, TransactionStatus
from tests.support.factories import SYSTEM, create_account
from tests.support.ledger_checks import checked_balance
from tests.support.statements import recorded_statements


async def post_top_up(
    session: AsyncSession, account: Account, amount: int, key: str, **kw: object
) -> ledger.Posting:
    assert account.id is not None
    return await ledger.post(
        session,
        SYSTEM,
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
    await ledger.settle(session, SYSTEM, entry_id, TransactionStatus.SUCCEEDED)
    again = await ledger.settle(session, SYSTEM, entry_id, TransactionStatus.FAILED, failure_code="late")
    assert again.status == TransactionStatus.SUCCEEDED and again.failure_code is None
    assert account.balance_minor == 2_000
    await checked_balance(session, account)


async def test_failed_settlement_leaves_the_balance(session: AsyncSession) -> None:
    account = await create_account(session)
    posting = await post_top_up(session, account, 2_000, "f", status=TransactionStatus.PENDING)
    assert posting.transaction.id is not None
    entry = await ledger.settle(
        session, SYSTEM, posting.transaction.id, TransactionStatus.FAILED, failure_code="card_declined"
    )
    assert entry.status == TransactionStatus.FAILED and account.balance_minor == 0
    await checked_balance(session, account)


async def test_reversal_is_a_new_entry(session: AsyncSession) -> None:
    account = await create_account(session)
    original = (await post_top_up(session, account, 1_500, "o")).transaction
    reversal = await ledger.reverse(
        session,
        SYSTEM,
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
                SYSTEM,
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


def top_up(account: Account, amount: int, key: str, **kw: object) -> ledger.NewEntry:
    assert account.id is not None
    return ledger.NewEntry(
        account_id=account.id,
        kind=TransactionKind.TOP_UP,
        amount_minor=amount,
        description="Top-up",
        idempotency_key=key,
        **kw,  # type: ignore[arg-type]
    )


async def test_post_many_moves_each_accounts_balance(session: AsyncSession) -> None:
    one, two, three = [await create_account(session) for _ in range(3)]
    # Not in id order: the ledger orders the locks itself.
    entries = [top_up(three, 300, "a"), top_up(one, 100, "a"), top_up(two, -50, "a"), top_up(one, 25, "b")]
    postings = await ledger.post_many(session, SYSTEM, entries)

    assert all(p.created for p in postings)
    assert [(p.transaction.account_id, p.transaction.amount_minor) for p in postings] == [
        (e.account_id, e.amount_minor) for e in entries
    ]
    assert [a.balance_minor for a in (one, two, three)] == [125, -50, 300]
    for account in (one, two, three):
        await checked_balance(session, account)


async def test_post_many_posts_a_repeated_key_once(session: AsyncSession) -> None:
    one, two = await create_account(session), await create_account(session)
    first = await ledger.post_many(
        session, SYSTEM, [top_up(one, 100, "k"), top_up(one, 100, "k"), top_up(two, 100, "k")]
    )
    again = await ledger.post_many(session, SYSTEM, [top_up(two, 999, "k"), top_up(one, 100, "new")])

    assert [p.created for p in first] == [True, False, True]
    assert first[1].transaction.id == first[0].transaction.id != first[2].transaction.id
    assert [p.created for p in again] == [False, True]
    assert again[0].transaction.id == first[2].transaction.id and again[0].transaction.amount_minor == 100
    assert (one.balance_minor, two.balance_minor) == (200, 100)
    await checked_balance(session, one)
    await checked_balance(session, two)


async def test_post_many_moves_only_succeeded_entries(session: AsyncSession) -> None:
    one, two = await create_account(session), await create_account(session)
    pending = TransactionStatus.PENDING
    postings = await ledger.post_many(
        session,
        SYSTEM,
        [top_up(one, 1_000, "p", status=pending), top_up(one, 40, "s"), top_up(two, 70, "p", status=pending)],
    )
    assert (one.balance_minor, two.balance_minor) == (40, 0)
    assert [p.transaction.settled_at is None for p in postings] == [True, False, True]

    entry_id = postings[0].transaction.id
    assert entry_id is not None
    await ledger.settle(session, SYSTEM, entry_id, TransactionStatus.SUCCEEDED)
    assert (await checked_balance(session, one), await checked_balance(session, two)) == (1_040, 0)


async def test_post_many_takes_amounts_beyond_32_bits(session: AsyncSession) -> None:
    one, two = await create_account(session), await create_account(session)
    await ledger.post_many(
        session, SYSTEM, [top_up(one, 5_000_000_000, "big"), top_up(two, -3_000_000_000, "big")]
    )
    assert (await checked_balance(session, one), await checked_balance(session, two)) == (
        5_000_000_000,
        -3_000_000_000,
    )


async def test_post_many_to_an_unknown_account_posts_nothing(session: AsyncSession) -> None:
    account = await create_account(session)
    with pytest.raises(NotFound):
        await ledger.post_many(
            session, SYSTEM, [top_up(account, 100, "x"), replace(top_up(account, 1, "y"), account_id=999_999)]
        )
    assert await checked_balance(session, account) == 0
    assert await ledger.find_by_idempotency_key(session, SYSTEM, account.id or 0, "x") is None


async def test_post_many_costs_four_statements_for_any_number_of_accounts(
    session: AsyncSession, engine: AsyncEngine
) -> None:
    accounts = [await create_account(session) for _ in range(50)]
    counts = []
    for batch in (
        [top_up(accounts[0], 1, "one")],
        [top_up(a, 1, f"all-{i}") for i, a in enumerate(accounts * 2)],
    ):
        with recorded_statements(engine) as statements:
            await ledger.post_many(session, SYSTEM, batch)
        counts.append(len(statements))
    # lock the accounts, look up the keys, insert the entries, update the balances
    assert counts == [4, 4]
    assert [a.balance_minor for a in accounts] == [3] + [2] * 49


@pytest.mark.postgres_only
async def test_concurrent_post_many_over_overlapping_accounts_keep_the_invariant(
    committing_engine: AsyncEngine,
) -> None:
    """Every batch names its accounts in a different order; the ledger locks them in id order: no deadlock."""
    factory = session_factory(committing_engine)
    async with unit_of_work(factory) as session:
        accounts = [await create_account(session) for _ in range(6)]
    ids = [a.id for a in accounts if a.id is not None]

    def batch(number: int) -> list[ledger.NewEntry]:
        # Overlapping windows of 4 of the 6 accounts, every other batch reversed; each batch posts twice per account.
        window = [ids[(number + offset) % len(ids)] for offset in range(4)]
        window = window[::-1] if number % 2 else window
        return [
            ledger.NewEntry(
                account_id=account_id,
                kind=TransactionKind.ADJUSTMENT,
                amount_minor=10 + number % 30,
                description="concurrent",
                idempotency_key=f"b{number % 30}-{repeat}",  # batches 30+ repeat earlier keys: posted once
            )
            for account_id in window
            for repeat in range(2)
        ]

    async def one(number: int) -> None:
        async with unit_of_work(factory) as session:
            await ledger.post_many(session, SYSTEM, batch(number))

    await asyncio.gather(*(one(number) for number in range(40)))
    async with unit_of_work(factory) as session:
        for account_id in ids:
            expected = sum(2 * (10 + n) for n in range(30) if account_id in {e.account_id for e in batch(n)})
            assert await checked_balance(session, account_id) == expected


async def test_no_posting_takes_a_balance_beyond_the_ledgers_bound(session: AsyncSession) -> None:
    top, bottom, settling = [await create_account(session) for _ in range(3)]
    near = ledger.MAX_BALANCE_MINOR - 100
    await ledger.post_many(session, SYSTEM, [top_up(top, near, "near"), top_up(bottom, -near, "near")])
    pending = await post_top_up(session, settling, 200, "pending", status=TransactionStatus.PENDING)
    await post_top_up(session, settling, near, "near")

    refused = [
        ([top_up(top, 101, "over")], "above $10,000,000,000,000.00"),
        # Each entry fits alone; their sum does not.
        ([top_up(bottom, -60, "a"), top_up(bottom, -60, "b")], "below -$10,000,000,000,000.00"),
        # Refused before its card is charged, not when it would settle.
        ([top_up(top, 101, "card", status=TransactionStatus.PENDING)], "above $10,000,000,000,000.00"),
        # One account's entry refuses the whole posting, the other account's too.
        ([top_up(top, 1, "fits"), top_up(bottom, -101, "over")], "below -$10,000,000,000,000.00"),
    ]
    for entries, side in refused:
        with pytest.raises(ledger.BalanceOutOfRange) as error:
            await ledger.post_many(session, SYSTEM, entries)
        assert error.value.message == (
            f"this would take the balance {side}, beyond what an account may hold; nothing was posted"
        )
    assert (await checked_balance(session, top), await checked_balance(session, bottom)) == (near, -near)
    assert await ledger.find_by_idempotency_key(session, SYSTEM, top.id or 0, "fits") is None

    assert pending.transaction.id is not None
    with pytest.raises(ledger.BalanceOutOfRange):
        await ledger.settle(session, SYSTEM, pending.transaction.id, TransactionStatus.SUCCEEDED)
    assert pending.transaction.status == TransactionStatus.PENDING
    assert await checked_balance(session, settling) == near

    # Up to the bound itself.
    await ledger.post_many(session, SYSTEM, [top_up(top, 100, "edge"), top_up(bottom, -100, "edge")])
    assert (await checked_balance(session, top), await checked_balance(session, bottom)) == (
        ledger.MAX_BALANCE_MINOR,
        -ledger.MAX_BALANCE_MINOR,
    )


async def test_a_balance_stored_beyond_the_bound_may_only_move_back(session: AsyncSession) -> None:
    account = await create_account(session)
    account.balance_minor = -2 * 10**16  # as usage left it before there was a bound
    await session.flush()

    await post_top_up(session, account, 1_000, "back")
    with pytest.raises(ledger.BalanceOutOfRange):
        await post_top_up(session, account, -1, "further")
    assert account.balance_minor == -2 * 10**16 + 1_000
