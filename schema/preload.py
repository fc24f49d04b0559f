"""The parts of accounts a query shows, fetched in one read before their fields resolve.

graphql-core runs each async field that has async siblings as a task of its own: on the partner dashboard that
was five tasks per account. So the query entry points fetch the parts of `Account` its selection names, through
the same loaders (the same statements the fields would cause), in the read that found the accounts or right
after it, and those fields answer at once from the loaders' caches (`now_or_later`). A field reached another
way (a subscription, `usage(month:)`) still waits on its loader.
"""

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, TypeAlias, TypeVar

from sqlmodel.ext.asyncio.session import AsyncSession
from strawberry.types.nodes import SelectedField, Selection

from billing.accounts.repository import ShownAccount
from schema.context import Info
from schema.loaders import (
    AutoRechargeByAccount,
    CompanyByAccount,
    FundingStateByAccount,
    LeadPlansByAccount,
    Loader,
    PaymentMethodsByAccount,
    UsageByAccountMonth,
    UsdRateByCurrency,
)

R = TypeVar("R")
# A field's value, or (when its loader has not fetched it yet) an awaitable of it.
NowOrLater: TypeAlias = R | Awaitable[R]

# Where an account is in the selection of each query entry point, and the type conditions it may be under.
ACCOUNT_TYPES = frozenset({"Account", "Node"})


def now_or_later(convert: Callable[..., R], *futures: "asyncio.Future[Any]") -> NowOrLater[R]:
    """`convert` of the futures' results: at once when they are all done, else a coroutine awaiting them."""
    if all(future.done() for future in futures):
        return convert(*(future.result() for future in futures))

    async def later() -> R:
        return convert(*[await future for future in futures])

    return later()


def _account_id(row: ShownAccount) -> int | None:
    return row.id


def _usd_rate_key(row: ShownAccount) -> str | None:
    return None if row.currency == "USD" else row.currency  # Account.balance asks no rate for USD


def _this_month(row: ShownAccount) -> tuple[int, None] | None:
    return None if row.id is None else (row.id, None)


KeyOf = Callable[[ShownAccount], Hashable | None]
# Account's fields answered by loaders, with the loaders each asks and its key for an account row.
PARTS: dict[str, tuple[tuple[type[Loader[Any, Any]], KeyOf], ...]] = {
    "balance": ((UsdRateByCurrency, _usd_rate_key),),
    "company": ((CompanyByAccount, _account_id),),
    "canAddFunds": ((CompanyByAccount, _account_id), (PaymentMethodsByAccount, _account_id)),
    "paymentMethods": ((PaymentMethodsByAccount, _account_id),),
    "leadPlans": ((LeadPlansByAccount, _account_id),),
    "autoRecharge": ((AutoRechargeByAccount, _account_id),),
    "fundingState": ((FundingStateByAccount, _account_id),),
    "usage": ((UsageByAccountMonth, _this_month),),
}


def _included(directives: dict[str, Any]) -> bool:
    return (
        directives.get("skip", {}).get("if") is not True
        and directives.get("include", {}).get("if") is not False
    )


def _fields(selections: Iterable[Selection], types: frozenset[str] | None) -> Iterator[SelectedField]:
    """The fields of a selection set, through its fragments (those on `types`, when given) and without the
    skipped ones."""
    for selection in selections:
        if not _included(selection.directives):
            continue
        if isinstance(selection, SelectedField):
            yield selection
        elif types is None or selection.type_condition is None or selection.type_condition in types:
            yield from _fields(selection.selections, types)


def account_fields(info: Info, path: Sequence[str]) -> list[SelectedField]:
    """The fields selected on the accounts found at `path` below the field being resolved."""
    found = [selection for field in info.selected_fields for selection in field.selections]
    for name in path:
        found = [
            selection
            for field in _fields(found, None)
            if field.name == name
            for selection in field.selections
        ]
    return list(_fields(found, ACCOUNT_TYPES))


def wanted_parts(info: Info, path: Sequence[str]) -> dict[type[Loader[Any, Any]], KeyOf]:
    """The loaders the selected fields of the accounts at `path` ask, with their keys."""
    wanted: dict[type[Loader[Any, Any]], KeyOf] = {}
    for field in account_fields(info, path):
        if field.name == "usage" and field.arguments.get("month") is not None:
            continue  # another month than this one: left to the field's own loader
        wanted.update(PARTS.get(field.name, ()))
    return wanted


async def prefetch(
    info: Info,
    session: AsyncSession,
    rows: Sequence[ShownAccount],
    wanted: dict[type[Loader[Any, Any]], KeyOf],
) -> None:
    """Fetch, in the caller's read, the parts `wanted` (see `wanted_parts`) of these accounts."""
    for loader_class, key_of in wanted.items():
        loader = info.context.loader(loader_class)
        if isinstance(loader, UsageByAccountMonth):
            loader.accounts.update({row.id: row for row in rows if row.id is not None})
        await loader.prefetch(session, [key for row in rows if (key := key_of(row)) is not None])
