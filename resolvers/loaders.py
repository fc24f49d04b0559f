"""Per-request dataloaders: one query per field per request, whatever the number of accounts asked for.

Batch functions apply the caller's scope too, so a loader can never hand out another account's rows.
"""

from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, Generic, TypeVar

from aiodataloader import DataLoader
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import fx
from billing.auth import Principal
from models import Company, LeadPlanSubscription, PaymentMethod
from resolvers.context import Context

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Loader(DataLoader, Generic[K, V]):  # type: ignore[misc]
    """Subclasses implement `fetch`; missing keys get `default`."""

    default: Any = None

    def __init__(self, context: Context) -> None:
        super().__init__()
        self.context = context

    async def fetch(self, session: AsyncSession, principal: Principal, keys: Sequence[K]) -> dict[K, V]:
        raise NotImplementedError

    async def batch_load_fn(self, keys: Sequence[K]) -> list[V]:
        async with self.context.db() as session:
            found = await self.fetch(session, self.context.principal, keys)
        return [found.get(key, self.default) for key in keys]

    async def load(self, key: K) -> V:
        return await super().load(key)  # type: ignore[no-any-return]


def group_by_account(rows: Iterable[Any]) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[row.account_id].append(row)
    return grouped


class CompanyByAccount(Loader[int, Company | None]):
    async def fetch(self, session: AsyncSession, principal: Principal, keys: Sequence[int]) -> dict[int, Company]:
        statement = select(Company).where(
            col(Company.account_id).in_(keys), principal.account_filter(col(Company.account_id))
        )
        return {row.account_id: row for row in (await session.exec(statement)).all()}


class PaymentMethodsByAccount(Loader[int, list[PaymentMethod]]):
    default: list[PaymentMethod] = []

    async def fetch(
        self, session: AsyncSession, principal: Principal, keys: Sequence[int]
    ) -> dict[int, list[PaymentMethod]]:
        statement = (
            select(PaymentMethod)
            .where(col(PaymentMethod.account_id).in_(keys), principal.account_filter(col(PaymentMethod.account_id)))
            .order_by(col(PaymentMethod.is_default).desc(), col(PaymentMethod.created_at), col(PaymentMethod.id))
        )
        return group_by_account((await session.exec(statement)).all())


class LeadPlansByAccount(Loader[int, list[LeadPlanSubscription]]):
    default: list[LeadPlanSubscription] = []

    async def fetch(
        self, session: AsyncSession, principal: Principal, keys: Sequence[int]
    ) -> dict[int, list[LeadPlanSubscription]]:
        statement = (
            select(LeadPlanSubscription)
            .where(
                col(LeadPlanSubscription.account_id).in_(keys),
                principal.account_filter(col(LeadPlanSubscription.account_id)),
            )
            .order_by(col(LeadPlanSubscription.created_at), col(LeadPlanSubscription.id))
        )
        return group_by_account((await session.exec(statement)).all())


class UsdRateByCurrency(Loader[str, tuple[Decimal, date] | None]):
    """USD per unit of each currency, from the latest ECB reference rates."""

    async def fetch(
        self, session: AsyncSession, principal: Principal, keys: Sequence[str]
    ) -> dict[str, tuple[Decimal, date]]:
        return await fx.usd_equivalents(session, set(keys))
