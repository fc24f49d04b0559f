"""Adding funds: the input, the readiness gate's errors and the payload."""

from enum import Enum
from typing import Annotated

import strawberry
from strawberry.utils.str_converters import to_camel_case

from billing.money import InvalidAmount
from billing.stripe_gateway import PaymentProviderRejected, PaymentProviderUnavailable
from billing.topups import service as payments
from schema.bounds import BoundedInput, bounded
from schema.company import company_field_path
from schema.errors import (
    DeclaredErrors,
    Error,
    PaymentProviderRejectedError,
    PaymentProviderUnavailableError,
    on,
    provider_rejected,
    provider_unavailable,
    with_message,
)
from schema.ledger import Transaction
from schema.money import Money, locale_for_country
from schema.payment_methods import PaymentMethodNotFoundError, payment_method_not_found


@strawberry.input
class AddFundsInput(BoundedInput):
    account_id: strawberry.ID | None = None
    payment_method_id: strawberry.ID
    amount: str = strawberry.field(description="A decimal in the account's billing currency, e.g. '250.00'.")
    idempotency_key: str = bounded(
        payments.MAX_IDEMPOTENCY_KEY_LENGTH,
        "One per Pay click; a retry with it charges nothing new.",
        min_length=1,
    )


@strawberry.type
class CompanyIncompleteError(Error):
    missing_fields: list[str] = strawberry.field(description="UpdateCompanyInput paths still to fill.")


@strawberry.type
class PaymentMethodRequiredError(Error):
    pass


@strawberry.type
class InvalidAmountError(Error):
    minimum: Money | None
    maximum: Money | None
    field: str = strawberry.field(description="The input field at fault, e.g. 'amount' or 'threshold'.")


def invalid_amount_error(
    error: InvalidAmount | payments.AmountOutOfRange, country: str
) -> InvalidAmountError:
    """The typed error for an amount that does not parse or is out of bounds, in the account's locale."""
    if isinstance(error, payments.AmountOutOfRange):
        return InvalidAmountError(
            message=error.describe(locale_for_country(country)),
            minimum=Money.of(error.minimum_minor, error.currency, country),
            maximum=Money.of(error.maximum_minor, error.currency, country),
            field="amount",
        )
    return InvalidAmountError(
        message=error.describe(to_camel_case), minimum=None, maximum=None, field=to_camel_case(error.field)
    )


@strawberry.type
class IdempotencyConflictError(Error):
    pass


@strawberry.type
class PaymentDeclinedError(Error):
    decline_code: str
    transaction: Transaction


def company_incomplete(error: payments.CompanyIncomplete, _country: object) -> CompanyIncompleteError:
    missing = [company_field_path(name) for name in error.missing_fields]
    return CompanyIncompleteError(message=error.describe(company_field_path), missing_fields=missing)


@strawberry.enum
class TopUpStatus(Enum):
    SUCCEEDED = "succeeded"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"


@strawberry.type
class AddFundsSuccess:
    status: TopUpStatus
    transaction: Transaction
    balance: Money = strawberry.field(description="The available balance after this top-up.")
    client_secret: str | None = strawberry.field(
        description="When `status` is REQUIRES_ACTION: finish 3-D Secure with Stripe.js; a webhook credits it."
    )


AddFundsPayload = Annotated[
    AddFundsSuccess
    | CompanyIncompleteError
    | PaymentMethodRequiredError
    | PaymentMethodNotFoundError
    | InvalidAmountError
    | IdempotencyConflictError
    | PaymentDeclinedError
    | PaymentProviderUnavailableError
    | PaymentProviderRejectedError,
    strawberry.union("AddFundsPayload"),
]


def payment_declined(error: payments.PaymentDeclined, country: str) -> PaymentDeclinedError:
    transaction = Transaction.from_model(error.transaction, country)
    return PaymentDeclinedError(message=error.message, decline_code=error.code, transaction=transaction)


ADD_FUNDS_ERRORS: DeclaredErrors[AddFundsPayload, str] = DeclaredErrors(
    on(payments.CompanyIncomplete, company_incomplete),
    on(payments.PaymentMethodRequired, with_message(PaymentMethodRequiredError)),
    on(payments.UnknownPaymentMethod, payment_method_not_found),
    on(InvalidAmount, invalid_amount_error),
    on(payments.AmountOutOfRange, invalid_amount_error),
    on(payments.IdempotencyConflict, with_message(IdempotencyConflictError)),
    on(payments.PaymentDeclined, payment_declined),
    on(PaymentProviderUnavailable, provider_unavailable),
    on(PaymentProviderRejected, provider_rejected),
)
