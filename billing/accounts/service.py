"""Accounts as a principal may see them, read through the accounts repository built for the principal's scope."""

from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.repository import AccountRepository, AccountRow, OwnedT
from billing.errors import NotFound
from billing.keys.service import Principal
from billing.pagination import Page, check_page_size, cursor_row_id, decode_cursor, encode_cursor
from billing.scope import Scope
from models import Account

CURSOR_KIND = "account"


def _repository(session: AsyncSession, principal: Principal) -> AccountRepository:
    return AccountRepository(session, Scope.of(principal))


async def get_visible(session: AsyncSession, principal: Principal, account_id: int) -> AccountRow:
    """The account, or NotFound whether it is missing or someone else's."""
    account = (await _repository(session, principal).rows_by_ids([account_id])).get(account_id)
    if account is None:
        raise NotFound("account not found")
    return account


def account_cursor(account: AccountRow) -> str:
    return encode_cursor(CURSOR_KIND, str(account.id))


async def list_visible(
    session: AsyncSession, principal: Principal, *, first: int, after: str | None
) -> Page[AccountRow]:
    check_page_size(first)
    after_id = None
    if after is not None:
        (raw_id,) = decode_cursor(after, CURSOR_KIND, 1)
        after_id = cursor_row_id(raw_id)
    rows = await _repository(session, principal).page(first=first, after_id=after_id)
    return Page(rows[:first], has_next=len(rows) > first)


async def visible_owned(
    session: AsyncSession, principal: Principal, model: type[OwnedT], pk: int
) -> tuple[OwnedT, Account]:
    """A row that belongs to an account (a card, a transaction, a lead plan) with its account, if visible."""
    found = await _repository(session, principal).owned(model, pk)
    if found is None:
        raise NotFound(f"{model.__name__} not found")
    return found
