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
from billing.stripe_gateway import CardDeclined, PaymentProviderRejected, PaymentProviderUnavailable
from models import PaymentMethod as PaymentMethodModel
from schema.bounds import BoundedInput, bounded, column_length
from schema.company import Company, company_field_path
from schema.errors import DeclaredErrors, Error, on, with_message
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


def payment_method_not_found(_error: DomainError, _country: object) -> PaymentMethodNotFoundError:
    return PaymentMethodNotFoundError(message=PAYMENT_METHOD_NOT_FOUND)


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


@strawberry.type(
    description="The payment provider refused the request itself; retrying it unchanged will not help."
)
class PaymentProviderRejectedError(Error):
    pass


@strawberry.type(description="The bank declined the card while it was being saved; try another card.")
class CardDeclinedError(Error):
    decline_code: str = strawberry.field(description="The bank's reason, e.g. 'insufficient_funds'.")


def company_incomplete(error: payments.CompanyIncomplete, _country: object) -> CompanyIncompleteError:
    missing = [company_field_path(name) for name in error.missing_fields]
    return CompanyIncompleteError(message=error.describe(company_field_path), missing_fields=missing)


provider_unavailable = with_message(PaymentProviderUnavailableError)
provider_rejected = with_message(PaymentProviderRejectedError)


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


# Each payload union, and next to it how each expected failure of that mutation becomes one of its members.

UpdateCompanyPayload = Annotated[
    UpdateCompanySuccess
    | InvalidCompanyInputError
    | PaymentProviderUnavailableError
    | PaymentProviderRejectedError,
    strawberry.union("UpdateCompanyPayload"),
]


def invalid_company_input(error: company.InvalidCompanyInput, _country: object) -> InvalidCompanyInputError:
    fields = [FieldError(field=company_field_path(name), message=why) for name, why in error.field_errors]
    return InvalidCompanyInputError(message=error.describe(company_field_path), field_errors=fields)


UPDATE_COMPANY_ERRORS: DeclaredErrors[UpdateCompanyPayload, str] = DeclaredErrors(
    on(company.InvalidCompanyInput, invalid_company_input),
    on(PaymentProviderUnavailable, provider_unavailable),
    on(PaymentProviderRejected, provider_rejected),
)

CreateSetupIntentPayload = Annotated[
    CreateSetupIntentSuccess | PaymentProviderUnavailableError | PaymentProviderRejectedError,
    strawberry.union("CreateSetupIntentPayload"),
]
CREATE_SETUP_INTENT_ERRORS: DeclaredErrors[CreateSetupIntentPayload, str] = DeclaredErrors(
    on(PaymentProviderUnavailable, provider_unavailable),
    on(PaymentProviderRejected, provider_rejected),
)

AttachPaymentMethodPayload = Annotated[
    PaymentMethodSuccess
    | PaymentMethodNotFoundError
    | CardDeclinedError
    | PaymentProviderRejectedError
    | PaymentProviderUnavailableError,
    strawberry.union("AttachPaymentMethodPayload"),
]


def card_declined(error: CardDeclined, _country: object) -> CardDeclinedError:
    return CardDeclinedError(message=error.message, decline_code=error.decline_code or error.code)


ATTACH_PAYMENT_METHOD_ERRORS: DeclaredErrors[AttachPaymentMethodPayload, str] = DeclaredErrors(
    # An unknown card and another customer's answer alike (NotFound); a card saved on another of our accounts
    # (PaymentMethodNotOwned, found when mirroring it) too.
    on(NotFound, payment_method_not_found),
    on(PaymentMethodNotOwned, payment_method_not_found),
    on(CardDeclined, card_declined),
    on(PaymentProviderUnavailable, provider_unavailable),
    on(PaymentProviderRejected, provider_rejected),
)

SetDefaultPaymentMethodPayload = Annotated[
    PaymentMethodSuccess
    | PaymentMethodNotFoundError
    | PaymentProviderUnavailableError
    | PaymentProviderRejectedError,
    strawberry.union("SetDefaultPaymentMethodPayload"),
]
SET_DEFAULT_PAYMENT_METHOD_ERRORS: DeclaredErrors[SetDefaultPaymentMethodPayload, str] = DeclaredErrors(
    on(NotFound, payment_method_not_found),
    on(PaymentProviderUnavailable, provider_unavailable),
    on(PaymentProviderRejected, provider_rejected),
)

DeletePaymentMethodPayload = Annotated[
    DeletePaymentMethodSuccess
    | PaymentMethodNotFoundError
    | PaymentMethodInUseError
    | PaymentProviderUnavailableError
    | PaymentProviderRejectedError,
    strawberry.union("DeletePaymentMethodPayload"),
]
DELETE_PAYMENT_METHOD_ERRORS: DeclaredErrors[DeletePaymentMethodPayload, str] = DeclaredErrors(
    on(NotFound, payment_method_not_found),
    on(PaymentMethodInUse, with_message(PaymentMethodInUseError)),
    on(PaymentProviderUnavailable, provider_unavailable),
    on(PaymentProviderRejected, provider_rejected),
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

CreateBillingPortalSessionPayload = Annotated[
    CreateBillingPortalSessionSuccess
    | ReturnUrlNotAllowedError
    | PaymentProviderUnavailableError
    | PaymentProviderRejectedError,
    strawberry.union("CreateBillingPortalSessionPayload"),
]
CREATE_BILLING_PORTAL_SESSION_ERRORS: DeclaredErrors[CreateBillingPortalSessionPayload, str] = DeclaredErrors(
    on(ReturnUrlNotAllowed, with_message(ReturnUrlNotAllowedError)),
    on(PaymentProviderUnavailable, provider_unavailable),
    on(PaymentProviderRejected, provider_rejected),
)
