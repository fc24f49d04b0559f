"""Mutation entry points for money in: check the caller may act on the account, call one service, map the result.

Every expected failure comes back as a typed error in the mutation's payload union (see schema/payments.py),
and what a step wrote is undone when it fails. These services call Stripe, so they take the session factory and
open a short transaction per step, never holding a connection while Stripe answers.
"""

from typing import cast

import strawberry

from billing import company, payment_methods, payments, portal
from billing.db import SessionFactory
from billing.stripe_gateway import StripeGateway
from models import Account as AccountModel
from resolvers.accounts import named_or_own_account
from resolvers.context import Info
from schema.company import Company
from schema.money import Money
from schema.node import from_global_id
from schema.payment_method import PaymentMethod
from schema.payments import (
    EXPECTED_ERRORS,
    AddFundsInput,
    AddFundsPayload,
    AddFundsSuccess,
    AttachPaymentMethodInput,
    AttachPaymentMethodPayload,
    CreateBillingPortalSessionInput,
    CreateBillingPortalSessionPayload,
    CreateBillingPortalSessionSuccess,
    CreateSetupIntentPayload,
    CreateSetupIntentSuccess,
    DeletePaymentMethodInput,
    DeletePaymentMethodPayload,
    DeletePaymentMethodSuccess,
    PaymentMethodInput,
    PaymentMethodSuccess,
    SetDefaultPaymentMethodPayload,
    TopUpStatus,
    UpdateCompanyInput,
    UpdateCompanyPayload,
    UpdateCompanySuccess,
    to_error,
)
from schema.transaction import Transaction


async def _account(info: Info, account_id: strawberry.ID | None) -> AccountModel:
    """The account the caller acts on: the one named (if visible to them) or their own."""
    return (await named_or_own_account(info, account_id, "accountId")).model


def _stripe(info: Info) -> StripeGateway:
    return info.context.stripe


def factory(info: Info) -> SessionFactory:
    """For services that call Stripe: they commit per step and hold no connection while Stripe answers."""
    return info.context.session_factory


def _pk(account: AccountModel) -> int:
    assert account.id is not None
    return account.id


@strawberry.type
class PaymentMutation:
    @strawberry.mutation(description="Save the company profile; the Stripe customer follows.")
    async def update_company(self, info: Info, input: UpdateCompanyInput) -> UpdateCompanyPayload:
        account = await _account(info, input.account_id)
        country = account.country
        try:
            saved = await company.save_company(factory(info), _stripe(info), _pk(account), input.to_domain())
        except EXPECTED_ERRORS as error:
            return cast(UpdateCompanyPayload, to_error(error, country))
        return UpdateCompanySuccess(company=Company.from_model(saved))

    @strawberry.mutation(description="A SetupIntent for Stripe Elements to collect a new card.")
    async def create_setup_intent(
        self, info: Info, account_id: strawberry.ID | None = None
    ) -> CreateSetupIntentPayload:
        account = await _account(info, account_id)
        country = account.country
        try:
            secret = await payment_methods.create_setup_intent(factory(info), _stripe(info), _pk(account))
        except EXPECTED_ERRORS as error:
            return cast(CreateSetupIntentPayload, to_error(error, country))
        return CreateSetupIntentSuccess(client_secret=secret)

    @strawberry.mutation(description="Record a card Stripe.js confirmed; the first card becomes the default.")
    async def attach_payment_method(
        self, info: Info, input: AttachPaymentMethodInput
    ) -> AttachPaymentMethodPayload:
        account = await _account(info, input.account_id)
        country = account.country
        try:
            method = await payment_methods.attach(
                factory(info), _stripe(info), _pk(account), input.stripe_payment_method_id
            )
        except EXPECTED_ERRORS as error:
            return cast(AttachPaymentMethodPayload, to_error(error, country))
        return PaymentMethodSuccess(payment_method=PaymentMethod.from_model(method))

    @strawberry.mutation
    async def set_default_payment_method(
        self, info: Info, input: PaymentMethodInput
    ) -> SetDefaultPaymentMethodPayload:
        account = await _account(info, input.account_id)
        country = account.country
        method_id = from_global_id(input.payment_method_id, "PaymentMethod", "paymentMethodId")
        try:
            method = await payment_methods.set_default(factory(info), _stripe(info), _pk(account), method_id)
        except EXPECTED_ERRORS as error:
            return cast(SetDefaultPaymentMethodPayload, to_error(error, country))
        return PaymentMethodSuccess(payment_method=PaymentMethod.from_model(method))

    @strawberry.mutation(description="Remove a card from Stripe and from the account.")
    async def delete_payment_method(
        self, info: Info, input: DeletePaymentMethodInput
    ) -> DeletePaymentMethodPayload:
        account = await _account(info, input.account_id)
        country = account.country
        method_id = from_global_id(input.payment_method_id, "PaymentMethod", "paymentMethodId")
        replacement = input.replacement_payment_method_id
        replacement_id = (
            from_global_id(replacement, "PaymentMethod", "replacementPaymentMethodId")
            if replacement
            else None
        )
        try:
            await payment_methods.delete(
                factory(info), _stripe(info), _pk(account), method_id, replacement_id=replacement_id
            )
        except EXPECTED_ERRORS as error:
            return cast(DeletePaymentMethodPayload, to_error(error, country))
        return DeletePaymentMethodSuccess(deleted_payment_method_id=input.payment_method_id)

    @strawberry.mutation(description="Top up the balance from a saved card.")
    async def add_funds(self, info: Info, input: AddFundsInput) -> AddFundsPayload:
        account = await _account(info, input.account_id)
        country = account.country
        request = payments.AddFundsRequest(
            account_id=_pk(account),
            payment_method_id=from_global_id(input.payment_method_id, "PaymentMethod", "paymentMethodId"),
            amount=input.amount,
            idempotency_key=input.idempotency_key,
        )
        try:
            top_up = await payments.add_funds(factory(info), _stripe(info), info.context.settings, request)
        except EXPECTED_ERRORS as error:
            return cast(AddFundsPayload, to_error(error, country))
        return AddFundsSuccess(
            status=TopUpStatus(top_up.status),
            transaction=Transaction.from_model(top_up.transaction, account.country),
            balance=Money.of(top_up.balance_minor, account.currency, account.country),
            client_secret=top_up.client_secret,
        )

    @strawberry.mutation(description="A Stripe customer portal session; `returnUrl` must be allow-listed.")
    async def create_billing_portal_session(
        self, info: Info, input: CreateBillingPortalSessionInput
    ) -> CreateBillingPortalSessionPayload:
        account = await _account(info, input.account_id)
        country = account.country
        allowlist = info.context.settings.portal_return_url_allowlist
        try:
            url = await portal.create_portal_session(
                factory(info), _stripe(info), _pk(account), input.return_url, allowlist
            )
        except EXPECTED_ERRORS as error:
            return cast(CreateBillingPortalSessionPayload, to_error(error, country))
        return CreateBillingPortalSessionSuccess(url=url)
