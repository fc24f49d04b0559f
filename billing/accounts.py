"""Accounts as a principal may see them. Every query here applies the principal's scope."""

from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.auth import Principal
from billing.errors import NotFound
from billing.pagination import Page, check_page_size, cursor_row_id, decode_cursor, encode_cursor
from models import Account

CURSOR_KIND = "account"


async def visible_by_ids(
    session: AsyncSession, principal: Principal, ids: Iterable[int]
) -> dict[int, Account]:
    statement = select(Account).where(
        col(Account.id).in_(list(ids)), principal.account_filter(col(Account.id))
    )
    return {
        account.id: account for account in (await session.exec(statement)).all() if account.id is not None
    }


async def get_visible(session: AsyncSession, principal: Principal, account_id: int) -> Account:
    """The account, or NotFound whether it is missing or someone else's."""
    account = (await visible_by_ids(session, principal, [account_id])).get(account_id)
    if account is None:
        raise NotFound("account not found")
    return account


def account_cursor(account: Account) -> str:
    return encode_cursor(CURSOR_KIND, str(account.id))


async def list_visible(
    session: AsyncSession, principal: Principal, *, first: int, after: str | None
) -> Page[Account]:
    check_page_size(first)
    statement = select(Account).where(principal.account_filter(col(Account.id)))
    if after is not None:
        (raw_id,) = decode_cursor(after, CURSOR_KIND, 1)
        statement = statement.where(col(Account.id) > cursor_row_id(raw_id))
    rows = list((await session.exec(statement.order_by(col(Account.id)).limit(first + 1))).all())
    return Page(rows[:first], has_next=len(rows) > first)


class OwnedByAccount(Protocol):
    id: int | None
    account_id: int


OwnedT = TypeVar("OwnedT", bound=OwnedByAccount)


async def visible_owned(
    session: AsyncSession, principal: Principal, model: type[OwnedT], pk: int
) -> tuple[OwnedT, Account]:
    """A row that belongs to an account (a card, a transaction, a lead plan) with its account, if visible."""
    table: Any = model
    statement = (
        select(table, Account)
        .join(Account, col(Account.id) == table.account_id)
        .where(table.id == pk, principal.account_filter(col(Account.id)))
    )
    found = (await session.exec(statement)).first()
    if found is None:
        raise NotFound(f"{model.__name__} not found")
    row, account = found
    return row, account
