"""Per-request loaders behind Account.autoRecharge and Account.fundingState."""

from collections.abc import Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from billing.auth import Principal
from billing.auto_recharge import AutoRechargeView, auto_recharge_views
from billing.funding import FundingState, funding_states
from resolvers.loaders import Loader


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
