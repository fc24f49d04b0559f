"""An account's funding state, which lead delivery checks before delivering: ok, low or depleted."""

from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.repository import AccountRepository
from billing.auto_recharge.repository import AutoRechargeRepository
from billing.scope import Scope
from models import AutoRechargeSettings

if (
    TYPE_CHECKING
):  # billing.keys.service records key events (billing.events.service), which needs funding_state from here
    from billing.keys.service import Principal


class FundingState(StrEnum):
    OK = "ok"
    LOW = "low"  # below the auto-recharge threshold, or the default low-balance threshold without it
    DEPLETED = "depleted"  # nothing left: balance <= 0


def funding_state(
    balance_minor: int, auto_recharge: AutoRechargeSettings | None, default_low_minor: int
) -> FundingState:
    if balance_minor <= 0:
        return FundingState.DEPLETED
    threshold = default_low_minor
    if auto_recharge is not None and auto_recharge.enabled:
        threshold = auto_recharge.threshold_minor
    return FundingState.LOW if balance_minor < threshold else FundingState.OK


async def funding_states(
    session: AsyncSession, principal: "Principal", account_ids: Sequence[int], default_low_minor: int
) -> dict[int, FundingState]:
    """States for many accounts in two statements; unknown and invisible ids are left out."""
    scope = Scope.of(principal)
    balances = await AccountRepository(session, scope).balances(account_ids)
    settings = await AutoRechargeRepository(session, scope).settings_of(balances)
    return {
        account_id: funding_state(balance, settings.get(account_id), default_low_minor)
        for account_id, balance in balances.items()
    }
