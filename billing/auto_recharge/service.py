"""Auto-recharge settings (saved by the account's people) and the state the Billing page shows for them."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlmodel.ext.asyncio.session import AsyncSession

from billing import money
from billing.accounts import service as accounts
from billing.accounts.funding import FundingState, funding_state
from billing.auto_recharge import engine as recharge_engine
from billing.auto_recharge.repository import AutoRechargeRepository
from billing.company.repository import CompanyRepository
from billing.company.service import missing_company_fields
from billing.config import Settings
from billing.errors import DomainError
from billing.events import service as events
from billing.keys.service import Principal
from billing.lead_plans.repository import LeadPlanRepository
from billing.ledger import service as ledger
from billing.payment_methods import service as payment_methods
from billing.scope import Scope
from billing.topups.service import (
    CompanyIncomplete,
    PaymentMethodRequired,
    UnknownPaymentMethod,
    check_top_up_range,
)
from models import Account, AutoRechargeSettings, AutoRechargeState, RechargeStatus
from models.types import utcnow


class NoActiveLeadPlan(DomainError):
    """Auto-recharge keeps lead delivery going, so it needs an active lead plan (else the page hides it)."""


class InvalidThreshold(DomainError):
    pass


class MonthlyLimitBelowAmount(DomainError):
    pass


@dataclass(frozen=True)
class AutoRechargeInput:
    """Amounts in the account's billing currency. No payment method means the account's default card."""

    enabled: bool
    threshold: Decimal | str
    amount: Decimal | str
    monthly_limit: Decimal | str
    payment_method_id: int | None = None


async def save_settings(
    session: AsyncSession,
    principal: Principal,
    account_id: int,
    request: AutoRechargeInput,
    *,
    limits: Settings,
    now: datetime | None = None,
) -> AutoRechargeSettings:
    """Validate and save; saving also lifts a suspension or a pending authentication (the customer acted).

    Turning auto-recharge on checks the lead plan, company and card; amounts are checked either way. When the
    balance is already below the new threshold, a recharge is scheduled at once.
    """
    now = now or utcnow()
    visible = await accounts.get_visible(session, principal, account_id)
    assert visible.id is not None
    scope = Scope.of(principal)
    account = await ledger.lock_account(session, scope, visible.id)
    method_id = await _check_prerequisites(session, scope, account, request) if request.enabled else None
    threshold, amount, monthly_limit = (
        money.to_minor(value, account.currency, field=name)
        for name, value in (
            ("threshold", request.threshold),
            ("amount", request.amount),
            ("monthly_limit", request.monthly_limit),
        )
    )
    _check_amounts(threshold, amount, monthly_limit, account.currency, limits)
    repository = AutoRechargeRepository(session, scope)
    settings = await repository.settings(account_id)
    before = (
        None if settings is None else events.snapshot(settings, events.AutoRechargeSettingsChanged.FIELDS)
    )
    state_before = funding_state(account.balance_minor, settings, limits.low_balance_threshold_minor)
    if settings is None:
        settings = AutoRechargeSettings(
            account_id=account_id, threshold_minor=0, amount_minor=0, monthly_limit_minor=0
        )
        repository.add_settings(settings)
    settings.enabled = request.enabled
    settings.threshold_minor = threshold
    settings.amount_minor = amount
    settings.monthly_limit_minor = monthly_limit
    if method_id is not None:
        settings.payment_method_id = method_id
    settings.consecutive_failures = 0
    settings.suspended_reason = None
    settings.action_required_client_secret = None
    settings.updated_at = now
    await repository.flush()
    _record_changes(session, account, settings, before, state_before, limits)
    if settings.enabled:
        await recharge_engine.schedule_if_low(session, scope, [account], now=now)
    return settings


def _record_changes(
    session: AsyncSession,
    account: Account,
    settings: AutoRechargeSettings,
    before: events.Snapshot | None,
    state_before: FundingState,
    limits: Settings,
) -> None:
    """The settings' before and after, and the funding state when the new threshold moved it (the balance
    did not move, so the ledger records nothing)."""
    assert account.id is not None
    after = events.snapshot(settings, events.AutoRechargeSettingsChanged.FIELDS)
    if after != before:
        events.record(session, events.AutoRechargeSettingsChanged(account.id, before, after))
    state_after = funding_state(account.balance_minor, settings, limits.low_balance_threshold_minor)
    if state_after != state_before:
        events.record(
            session, events.FundingStateChanged(account.id, state_before, state_after, account.balance_minor)
        )


async def _check_prerequisites(
    session: AsyncSession, scope: Scope, account: Account, request: AutoRechargeInput
) -> int:
    """The card to charge, once the lead plan and company checks pass."""
    assert account.id is not None
    if not await LeadPlanRepository(session, scope).has_active(account.id):
        raise NoActiveLeadPlan("auto-recharge needs an active lead plan subscription")
    missing = missing_company_fields(await CompanyRepository(session, scope).of_account(account.id))
    if missing:
        raise CompanyIncomplete(missing)
    cards = await payment_methods.account_methods(session, scope, account.id)
    wanted = request.payment_method_id
    card = next((c for c in cards if (c.is_default if wanted is None else c.id == wanted)), None)
    if card is None or card.id is None:
        if request.payment_method_id is None:
            raise PaymentMethodRequired("add a card first")
        raise UnknownPaymentMethod("not a card of this account")
    return card.id


def _check_amounts(threshold: int, amount: int, monthly_limit: int, currency: str, limits: Settings) -> None:
    if threshold < 0:
        raise InvalidThreshold("the threshold must not be negative")
    # A recharge is a top-up: the same bounds, and the same error as addFunds.
    check_top_up_range(limits, amount, currency)
    if monthly_limit < amount:
        raise MonthlyLimitBelowAmount("the monthly limit must be at least the recharge amount")


@dataclass(frozen=True)
class AutoRechargeView:
    """Settings plus what the engine is doing, for the page."""

    settings: AutoRechargeSettings
    currency: str
    state: AutoRechargeState | None  # None while turned off
    action_client_secret: str | None  # for Stripe.js when the state is action required
    suspended_reason: str | None
    last_attempt_at: datetime | None
    last_attempt_outcome: RechargeStatus | None
    last_attempt_message: str | None
    recharged_this_month_minor: int


async def auto_recharge_views(
    session: AsyncSession, principal: Principal, account_ids: Sequence[int], *, now: datetime | None = None
) -> dict[int, AutoRechargeView]:
    """Views of the visible accounts that have settings: four statements, whatever their number."""
    now = now or utcnow()
    repository = AutoRechargeRepository(session, Scope.of(principal))
    found = {
        settings.account_id: (settings, account)
        for settings, account in await repository.with_accounts(account_ids)
    }
    if not found:
        return {}
    ids = list(found)
    in_flight = await repository.in_flight(ids)
    last = await repository.last_finished(ids)
    recent = await recharge_engine.recent_recharges(repository, ids, now=now)
    views = {}
    for account_id, (settings, account) in found.items():
        recharged = recharge_engine.recharged_in_month(recent[account_id], account.time_zone, now)
        attempt = last.get(account_id)
        views[account_id] = AutoRechargeView(
            settings=settings,
            currency=account.currency,
            state=_state(settings, account_id in in_flight, recharged),
            action_client_secret=settings.action_required_client_secret,
            suspended_reason=settings.suspended_reason,
            last_attempt_at=attempt.finished_at if attempt else None,
            last_attempt_outcome=RechargeStatus(attempt.status) if attempt else None,
            last_attempt_message=attempt.outcome_message if attempt else None,
            recharged_this_month_minor=recharged,
        )
    return views


def _state(settings: AutoRechargeSettings, in_flight: bool, recharged_minor: int) -> AutoRechargeState | None:
    if not settings.enabled:
        return None
    if settings.suspended_reason is not None:
        return AutoRechargeState.SUSPENDED
    if settings.action_required_client_secret is not None:
        return AutoRechargeState.ACTION_REQUIRED
    if in_flight:
        return AutoRechargeState.IN_PROGRESS
    if recharged_minor + settings.amount_minor > settings.monthly_limit_minor:
        return AutoRechargeState.MONTHLY_LIMIT_REACHED
    return AutoRechargeState.ACTIVE
