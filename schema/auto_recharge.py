"""Auto-recharge on the Billing tab: the settings, the engine's state, and the autoRecharge mutation's payload."""

from datetime import datetime
from typing import Annotated

import strawberry

from billing.accounts.funding import FundingState
from billing.auto_recharge import service as auto_recharge
from billing.auto_recharge.service import AutoRechargeView
from billing.money import InvalidAmount
from billing.topups.service import (
    AmountOutOfRange,
    CompanyIncomplete,
    PaymentMethodRequired,
    UnknownPaymentMethod,
)
from models import AutoRechargeState, RechargeStatus
from schema.errors import DeclaredErrors, Error, on, with_message
from schema.money import Money
from schema.node import to_global_id
from schema.payment_methods import PaymentMethodNotFoundError, payment_method_not_found
from schema.topups import (
    CompanyIncompleteError,
    InvalidAmountError,
    PaymentMethodRequiredError,
    company_incomplete,
    invalid_amount_error,
)

# Registered on the domain enums themselves, so fields are typed with them (as schema/ledger.py does).
strawberry.enum(AutoRechargeState)
strawberry.enum(RechargeStatus, name="RechargeOutcome")
strawberry.enum(
    FundingState,
    description="ok; low: below the auto-recharge threshold (or the default); depleted: balance at or below zero.",
)


@strawberry.type
class RechargeAttempt:
    at: datetime
    outcome: RechargeStatus
    message: str | None


@strawberry.type
class AutoRecharge:
    enabled: bool
    threshold: Money = strawberry.field(description="Recharge when the balance falls below this.")
    amount: Money
    monthly_limit: Money
    payment_method_id: strawberry.ID | None
    state: AutoRechargeState | None = strawberry.field(description="None while auto-recharge is off.")
    action_client_secret: str | None = strawberry.field(
        description="When the state is ACTION_REQUIRED: for Stripe.js to let the customer authenticate."
    )
    suspended_reason: str | None
    last_attempt: RechargeAttempt | None
    recharged_this_month: Money

    @classmethod
    def of(cls, view: AutoRechargeView, country: str) -> "AutoRecharge":
        settings = view.settings

        def money(minor: int) -> Money:
            return Money.of(minor, view.currency, country)

        method = settings.payment_method_id
        attempt = None
        if view.last_attempt_at is not None and view.last_attempt_outcome is not None:
            attempt = RechargeAttempt(
                at=view.last_attempt_at, outcome=view.last_attempt_outcome, message=view.last_attempt_message
            )
        return cls(
            enabled=settings.enabled,
            threshold=money(settings.threshold_minor),
            amount=money(settings.amount_minor),
            monthly_limit=money(settings.monthly_limit_minor),
            payment_method_id=to_global_id("PaymentMethod", method) if method is not None else None,
            state=view.state,
            action_client_secret=view.action_client_secret,
            suspended_reason=view.suspended_reason,
            last_attempt=attempt,
            recharged_this_month=money(view.recharged_this_month_minor),
        )


@strawberry.input
class AutoRechargeInput:
    account_id: strawberry.ID | None = strawberry.field(
        default=None, description="Default: the caller's account."
    )
    enabled: bool
    threshold: str = strawberry.field(description="Exact decimal in the account's billing currency.")
    amount: str = strawberry.field(description="Exact decimal; within the top-up bounds.")
    payment_method_id: strawberry.ID | None = strawberry.field(
        default=None, description="Default: the default card."
    )
    monthly_limit: str = strawberry.field(description="At least `amount`.")


@strawberry.type
class AutoRechargeSuccess:
    auto_recharge: AutoRecharge


@strawberry.type(
    description="Auto-recharge needs an active lead plan subscription; the page hides it otherwise."
)
class NoActiveLeadPlanError(Error):
    pass


@strawberry.type
class InvalidThresholdError(Error):
    pass


@strawberry.type
class MonthlyLimitBelowAmountError(Error):
    pass


AutoRechargePayload = Annotated[
    AutoRechargeSuccess
    | NoActiveLeadPlanError
    | CompanyIncompleteError
    | PaymentMethodRequiredError
    | PaymentMethodNotFoundError
    | InvalidThresholdError
    | InvalidAmountError
    | MonthlyLimitBelowAmountError,
    strawberry.union("AutoRechargePayload"),
]

AUTO_RECHARGE_ERRORS: DeclaredErrors[AutoRechargePayload, str] = DeclaredErrors(
    on(auto_recharge.NoActiveLeadPlan, with_message(NoActiveLeadPlanError)),
    on(CompanyIncomplete, company_incomplete),
    on(PaymentMethodRequired, with_message(PaymentMethodRequiredError)),
    on(UnknownPaymentMethod, payment_method_not_found),
    on(auto_recharge.InvalidThreshold, with_message(InvalidThresholdError)),
    on(AmountOutOfRange, invalid_amount_error),
    on(InvalidAmount, invalid_amount_error),
    on(auto_recharge.MonthlyLimitBelowAmount, with_message(MonthlyLimitBelowAmountError)),
)
