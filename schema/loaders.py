"""Per-request dataloaders: one query per field per request, whatever the number of accounts asked for.

Each batch is one repository method, on a repository built for the caller's scope: a loader only batches,
and can never hand out another account's rows.
"""

import asyncio
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

from aiodataloader import DataLoader
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.funding import FundingState, funding_states
from billing.accounts.repository import ShownAccount
from billing.auto_recharge.service import AutoRechargeView, auto_recharge_views
from billing.company.repository import CompanyRepository, CompanyRow
from billing.fx import service as fx
from billing.keys.service import Principal
from billing.lead_plans.repository import LeadPlanRepository, LeadPlanRow
from billing.months import Month
from billing.payment_methods.repository import PaymentMethodRepository, PaymentMethodRow
from billing.scope import Scope
from billing.usage import summary as usage_summary
from schema.context import Context

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Loader(DataLoader[K, V]):
    """Subclasses implement `fetch`; keys it leaves out get `missing()`."""

    def __init__(self, context: Context) -> None:
        super().__init__()
        self.context = context

    async def fetch(self, session: AsyncSession, principal: Principal, keys: Sequence[K]) -> Mapping[K, V]:
        raise NotImplementedError

    def load(self, key: K) -> "asyncio.Future[V]":
        # Several fields await one shared future per key; graphql-core cancels a field whose non-null
        # sibling failed, and a cancelled waiter must not cancel the future the others still wait on.
        return asyncio.shield(super().load(key))

    def missing(self) -> V:
        return None  # type: ignore[return-value]  # the loaders whose V excludes None override this

    async def prefetch(self, session: AsyncSession, keys: Iterable[K]) -> None:
        """Fetch the keys not asked for yet in the caller's read and keep them: a field asking later is
        answered at once, without a task of its own (schema/preload.py)."""
        wanted = [key for key in dict.fromkeys(keys) if key not in self._cache]
        if wanted:
            found = await self.fetch(session, self.context.principal, wanted)
            for key in wanted:
                self.prime(key, found[key] if key in found else self.missing())

    async def batch_load_fn(self, keys: Sequence[K]) -> list[V]:
        principal = self.context.principal
        found = await self.context.read(lambda session: self.fetch(session, principal, keys))
        return [found[key] if key in found else self.missing() for key in keys]


def group_by_account(rows: Iterable[Any]) -> Mapping[int, list[Any]]:
    grouped: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[row.account_id].append(row)
    return grouped


class CompanyByAccount(Loader[int, CompanyRow | None]):
    async def fetch(
        self, session: AsyncSession, principal: Principal, keys: Sequence[int]
    ) -> Mapping[int, CompanyRow]:
        return await CompanyRepository(session, Scope.of(principal)).of_accounts(keys)


class PaymentMethodsByAccount(Loader[int, list[PaymentMethodRow]]):
    def missing(self) -> list[PaymentMethodRow]:
        return []

    async def fetch(
        self, session: AsyncSession, principal: Principal, keys: Sequence[int]
    ) -> Mapping[int, list[PaymentMethodRow]]:
        return group_by_account(await PaymentMethodRepository(session, Scope.of(principal)).of_accounts(keys))


class LeadPlansByAccount(Loader[int, list[LeadPlanRow]]):
    def missing(self) -> list[LeadPlanRow]:
        return []

    async def fetch(
        self, session: AsyncSession, principal: Principal, keys: Sequence[int]
    ) -> Mapping[int, list[LeadPlanRow]]:
        return group_by_account(await LeadPlanRepository(session, Scope.of(principal)).of_accounts(keys))


class UsdRateByCurrency(Loader[str, tuple[Decimal, date] | None]):
    """USD per unit of each currency, from the latest ECB reference rates."""

    async def fetch(
        self, session: AsyncSession, principal: Principal, keys: Sequence[str]
    ) -> Mapping[str, tuple[Decimal, date]]:
        return await fx.usd_equivalents(session, set(keys))


class UsageByAccountMonth(Loader[tuple[int, Month | None], usage_summary.UsageSummary | None]):
    """Keyed by (account, month); None means each account's current month in its own time zone.

    Loaded through `load_for` with the account row the GraphQL `Account` was built from, which was read within
    the caller's scope: the batch reuses those rows (the account's time zone and currency) instead of
    selecting the accounts again.
    """

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.accounts: dict[int, ShownAccount] = {}

    def load_for(
        self, account: ShownAccount, month: Month | None
    ) -> "asyncio.Future[usage_summary.UsageSummary | None]":
        assert account.id is not None
        self.accounts[account.id] = account
        return self.load((account.id, month))

    async def fetch(
        self, session: AsyncSession, principal: Principal, keys: Sequence[tuple[int, Month | None]]
    ) -> Mapping[tuple[int, Month | None], usage_summary.UsageSummary]:
        found: dict[tuple[int, Month | None], usage_summary.UsageSummary] = {}
        for month in {month for _, month in keys}:
            rows = [self.accounts[account_id] for account_id, wanted in keys if wanted == month]
            summaries = await usage_summary.summaries_of(session, Scope.of(principal), rows, month)
            found.update({(account_id, month): summary for account_id, summary in summaries.items()})
        return found


class AutoRechargeByAccount(Loader[int, AutoRechargeView | None]):
    async def fetch(
        self, session: AsyncSession, principal: Principal, keys: Sequence[int]
    ) -> dict[int, AutoRechargeView]:
        return await auto_recharge_views(session, principal, keys)


class FundingStateByAccount(Loader[int, FundingState | None]):
    async def fetch(
        self, session: AsyncSession, principal: Principal, keys: Sequence[int]
    ) -> dict[int, FundingState]:
        return await funding_states(
            session, principal, keys, self.context.settings.low_balance_threshold_minor
        )
