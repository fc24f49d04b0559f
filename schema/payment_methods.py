"""Saved cards, as mirrored from Stripe (card data never reaches this server)."""

from datetime import datetime
from typing import Annotated

import strawberry

from billing.errors import DomainError, NotFound
from billing.payment_methods.portal import ReturnUrlNotAllowed
from billing.payment_methods.repository import PaymentMethodRow
from billing.payment_methods.service import PaymentMethodInUse, PaymentMethodNotOwned
from billing.stripe_gateway import CardDeclined, PaymentProviderRejected, PaymentProviderUnavailable
from models import PaymentMethod as PaymentMethodModel
from schema.bounds import BoundedInput, bounded, column_length
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
from schema.node import Node, to_global_id


@strawberry.type
class PaymentMethod(Node):
    stripe_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    is_default: bool
    created_at: datetime

    @classmethod
    def from_model(cls, row: PaymentMethodModel | PaymentMethodRow) -> "PaymentMethod":
        assert row.id is not None
        return cls(
            id=to_global_id("PaymentMethod", row.id),
            stripe_id=row.stripe_payment_method_id,
            brand=row.brand,
            last4=row.last4,
            exp_month=row.exp_month,
            exp_year=row.exp_year,
            is_default=row.is_default,
            created_at=row.created_at,
        )


# Longer than any page a browser returns to; the allow-list decides the rest.
MAX_RETURN_URL_LENGTH = 2_048


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
class CreateBillingPortalSessionInput(BoundedInput):
    account_id: strawberry.ID | None = None
    return_url: str = bounded(MAX_RETURN_URL_LENGTH)


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


@strawberry.type(description="The bank declined the card while it was being saved; try another card.")
class CardDeclinedError(Error):
    decline_code: str = strawberry.field(description="The bank's reason, e.g. 'insufficient_funds'.")


@strawberry.type
class ReturnUrlNotAllowedError(Error):
    pass


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
class CreateBillingPortalSessionSuccess:
    url: str


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
