"""Money in: the company form, cards, addFunds and the Stripe portal — inputs, payloads and typed errors."""

from enum import Enum
from typing import Annotated

import strawberry
from strawberry.utils.str_converters import to_camel_case

from billing import company, payments
from billing.errors import DomainError, NotFound
from billing.money import InvalidAmount
from billing.payment_methods import PaymentMethodInUse, PaymentMethodNotOwned
from billing.portal import ReturnUrlNotAllowed
from billing.stripe_gateway import PaymentProviderRejected, PaymentProviderUnavailable
from models import PaymentMethod as PaymentMethodModel
from schema.bounds import BoundedInput, bounded, column_length
from schema.company import Company, company_field_path
from schema.errors import Error
from schema.money import Money, locale_for_country
from schema.payment_method import PaymentMethod
from schema.transaction import Transaction

# Longer than any page a browser returns to; the allow-list decides the rest.
MAX_RETURN_URL_LENGTH = 2_048


@strawberry.input
class AddressInput:
    line1: str
    line2: str | None = None
    city: str
    postal_code: str
    region: str | None = None
    country: str = strawberry.field(description="ISO 3166-1 alpha-2, e.g. 'DE'.")


@strawberry.input
class UpdateCompanyInput:
    account_id: strawberry.ID | None = strawberry.field(
        default=None, description="Default: the caller's account."
    )
    legal_name: str
    registration_number: str
    vat_id: str | None = None
    phone: str = strawberry.field(description="Any common format; stored as E.164.")
    address: AddressInput

    def to_domain(self) -> company.CompanyInput:
        return company.CompanyInput(
            legal_name=self.legal_name,
            registration_number=self.registration_number,
            vat_id=self.vat_id,
            phone=self.phone,
            address_line1=self.address.line1,
            address_line2=self.address.line2,
            city=self.address.city,
            postal_code=self.address.postal_code,
            region=self.address.region,
            country=self.address.country,
        )


@strawberry.input
class AttachPaymentMethodInput(BoundedInput):
    account_id: strawberry.ID | None = None
    stripe_payment_method_id: str = bounded(
        column_length(PaymentMethodModel, "stripe_payment_method_id"),
        "The `pm_...` id Stripe.js confirmed.",
        min_length=1,
    )


@strawberry.input
class PaymentMethodInput:
    account_id: strawberry.ID | None = None
    payment_method_id: strawberry.ID


@strawberry.input
class DeletePaymentMethodInput:
    account_id: strawberry.ID | None = None
    payment_method_id: strawberry.ID
    replacement_payment_method_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Required when auto-recharge pays with the card being deleted; takes its place.",
    )


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


@strawberry.input
class CreateBillingPortalSessionInput(BoundedInput):
    account_id: strawberry.ID | None = None
    return_url: str = bounded(MAX_RETURN_URL_LENGTH)


@strawberry.type
class FieldError:
    field: str = strawberry.field(description="The input path, e.g. 'address.postalCode'.")
    message: str


@strawberry.type
class InvalidCompanyInputError(Error):
    field_errors: list[FieldError]


@strawberry.type
class CompanyIncompleteError(Error):
    missing_fields: list[str] = strawberry.field(description="UpdateCompanyInput paths still to fill.")


@strawberry.type
class PaymentMethodRequiredError(Error):
    pass


@strawberry.type
class PaymentMethodNotFoundError(Error):
    pass


# One message however the card is missing (unknown, another account's, deleted): nothing to tell them apart by.
PAYMENT_METHOD_NOT_FOUND = "no such payment method on this account"


@strawberry.type
class PaymentMethodInUseError(Error):
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


@strawberry.type
class PaymentProviderUnavailableError(Error):
    pass


@strawberry.type
class PaymentProviderRejectedError(Error):
    pass


@strawberry.type
class ReturnUrlNotAllowedError(Error):
    pass


@strawberry.enum
class TopUpStatus(Enum):
    SUCCEEDED = "succeeded"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"


@strawberry.type
class UpdateCompanySuccess:
    company: Company


@strawberry.type
class CreateSetupIntentSuccess:
    client_secret: str = strawberry.field(description="For Stripe Elements' confirmSetup.")


@strawberry.type
class PaymentMethodSuccess:
    payment_method: PaymentMethod


@strawberry.type
class DeletePaymentMethodSuccess:
    deleted_payment_method_id: strawberry.ID


@strawberry.type
class AddFundsSuccess:
    status: TopUpStatus
    transaction: Transaction
    balance: Money = strawberry.field(description="The available balance after this top-up.")
    client_secret: str | None = strawberry.field(
        description="When `status` is REQUIRES_ACTION: finish 3-D Secure with Stripe.js; a webhook credits it."
    )


@strawberry.type
class CreateBillingPortalSessionSuccess:
    url: str


UpdateCompanyPayload = Annotated[
    UpdateCompanySuccess | InvalidCompanyInputError | PaymentProviderUnavailableError,
    strawberry.union("UpdateCompanyPayload"),
]
CreateSetupIntentPayload = Annotated[
    CreateSetupIntentSuccess | PaymentProviderUnavailableError, strawberry.union("CreateSetupIntentPayload")
]
AttachPaymentMethodPayload = Annotated[
    PaymentMethodSuccess
    | PaymentMethodNotFoundError
    | PaymentProviderRejectedError
    | PaymentProviderUnavailableError,
    strawberry.union("AttachPaymentMethodPayload"),
]
SetDefaultPaymentMethodPayload = Annotated[
    PaymentMethodSuccess | PaymentMethodNotFoundError, strawberry.union("SetDefaultPaymentMethodPayload")
]
DeletePaymentMethodPayload = Annotated[
    DeletePaymentMethodSuccess
    | PaymentMethodNotFoundError
    | PaymentMethodInUseError
    | PaymentProviderUnavailableError,
    strawberry.union("DeletePaymentMethodPayload"),
]
AddFundsPayload = Annotated[
    AddFundsSuccess
    | CompanyIncompleteError
    | PaymentMethodRequiredError
    | PaymentMethodNotFoundError
    | InvalidAmountError
    | IdempotencyConflictError
    | PaymentDeclinedError
    | PaymentProviderUnavailableError,
    strawberry.union("AddFundsPayload"),
]
CreateBillingPortalSessionPayload = Annotated[
    CreateBillingPortalSessionSuccess | ReturnUrlNotAllowedError | PaymentProviderUnavailableError,
    strawberry.union("CreateBillingPortalSessionPayload"),
]

# Every expected failure of these mutations, as the typed error the client gets.
EXPECTED_ERRORS = (
    company.InvalidCompanyInput,
    payments.CompanyIncomplete,
    payments.PaymentMethodRequired,
    payments.UnknownPaymentMethod,
    PaymentMethodNotOwned,
    NotFound,
    PaymentMethodInUse,
    InvalidAmount,
    payments.AmountOutOfRange,
    payments.IdempotencyConflict,
    payments.PaymentDeclined,
    PaymentProviderUnavailable,
    PaymentProviderRejected,
    ReturnUrlNotAllowed,
)


def to_error(error: DomainError, country: str) -> Error:
    """The schema's typed error for a domain error (one of EXPECTED_ERRORS)."""
    message = error.message
    match error:
        case company.InvalidCompanyInput():
            fields = [
                FieldError(field=company_field_path(name), message=why) for name, why in error.field_errors
            ]
            return InvalidCompanyInputError(message=error.describe(company_field_path), field_errors=fields)
        case payments.CompanyIncomplete():
            missing = [company_field_path(name) for name in error.missing_fields]
            return CompanyIncompleteError(message=error.describe(company_field_path), missing_fields=missing)
        case payments.PaymentMethodRequired():
            return PaymentMethodRequiredError(message=message)
        case payments.UnknownPaymentMethod() | PaymentMethodNotOwned() | NotFound():
            return PaymentMethodNotFoundError(message=PAYMENT_METHOD_NOT_FOUND)
        case PaymentMethodInUse():
            return PaymentMethodInUseError(message=message)
        case payments.AmountOutOfRange() | InvalidAmount():
            return invalid_amount_error(error, country)
        case payments.IdempotencyConflict():
            return IdempotencyConflictError(message=message)
        case payments.PaymentDeclined():
            return PaymentDeclinedError(
                message=message,
                decline_code=error.code,
                transaction=Transaction.from_model(error.transaction, country),
            )
        case PaymentProviderUnavailable():
            return PaymentProviderUnavailableError(message=message)
        case PaymentProviderRejected():
            return PaymentProviderRejectedError(message=message)
        case ReturnUrlNotAllowed():
            return ReturnUrlNotAllowedError(message=message)
    raise error
