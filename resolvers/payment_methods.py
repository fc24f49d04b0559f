"""Mutation entry points for saved cards and the Stripe portal: check the caller may act on the account, call one
service, map the result. The services call Stripe, so they take the session factory and never hold a connection
while Stripe answers."""

import strawberry

from billing.payment_methods import portal
from billing.payment_methods import service as payment_methods
from billing.scope import Scope
from resolvers.mutation import on_account
from schema.accounts import Account
from schema.context import Info
from schema.node import from_global_id
from schema.payment_methods import (
    ATTACH_PAYMENT_METHOD_ERRORS,
    CREATE_BILLING_PORTAL_SESSION_ERRORS,
    CREATE_SETUP_INTENT_ERRORS,
    DELETE_PAYMENT_METHOD_ERRORS,
    SET_DEFAULT_PAYMENT_METHOD_ERRORS,
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
    PaymentMethod,
    PaymentMethodInput,
    PaymentMethodSuccess,
    SetDefaultPaymentMethodPayload,
)


def payment_method_id(id: strawberry.ID, argument: str) -> int:
    return from_global_id(id, "PaymentMethod", argument)


@strawberry.type
class PaymentMethodMutation:
    @strawberry.mutation(description="A SetupIntent for Stripe Elements to collect a new card.")
    async def create_setup_intent(
        self, info: Info, account_id: strawberry.ID | None = None
    ) -> CreateSetupIntentPayload:
        async def work(account: Account) -> CreateSetupIntentSuccess:
            context = info.context
            secret = await payment_methods.create_setup_intent(
                context.session_factory, Scope.of(context.principal), context.stripe, account.pk
            )
            return CreateSetupIntentSuccess(client_secret=secret)

        return await on_account(info, account_id, CREATE_SETUP_INTENT_ERRORS, work)

    @strawberry.mutation(description="Record a card Stripe.js confirmed; the first card becomes the default.")
    async def attach_payment_method(
        self, info: Info, input: AttachPaymentMethodInput
    ) -> AttachPaymentMethodPayload:
        async def work(account: Account) -> PaymentMethodSuccess:
            context = info.context
            method = await payment_methods.attach(
                context.session_factory,
                Scope.of(context.principal),
                context.stripe,
                account.pk,
                input.stripe_payment_method_id,
            )
            return PaymentMethodSuccess(payment_method=PaymentMethod.from_model(method))

        return await on_account(info, input.account_id, ATTACH_PAYMENT_METHOD_ERRORS, work)

    @strawberry.mutation(description="Make a card the default, here and in Stripe.")
    async def set_default_payment_method(
        self, info: Info, input: PaymentMethodInput
    ) -> SetDefaultPaymentMethodPayload:
        async def work(account: Account) -> PaymentMethodSuccess:
            context = info.context
            method_id = payment_method_id(input.payment_method_id, "paymentMethodId")
            method = await payment_methods.set_default(
                context.session_factory, Scope.of(context.principal), context.stripe, account.pk, method_id
            )
            return PaymentMethodSuccess(payment_method=PaymentMethod.from_model(method))

        return await on_account(info, input.account_id, SET_DEFAULT_PAYMENT_METHOD_ERRORS, work)

    @strawberry.mutation(description="Remove a card from Stripe and from the account.")
    async def delete_payment_method(
        self, info: Info, input: DeletePaymentMethodInput
    ) -> DeletePaymentMethodPayload:
        async def work(account: Account) -> DeletePaymentMethodSuccess:
            context = info.context
            replacement = input.replacement_payment_method_id
            await payment_methods.delete(
                context.session_factory,
                Scope.of(context.principal),
                context.stripe,
                account.pk,
                payment_method_id(input.payment_method_id, "paymentMethodId"),
                replacement_id=(
                    payment_method_id(replacement, "replacementPaymentMethodId") if replacement else None
                ),
            )
            return DeletePaymentMethodSuccess(deleted_payment_method_id=input.payment_method_id)

        return await on_account(info, input.account_id, DELETE_PAYMENT_METHOD_ERRORS, work)

    @strawberry.mutation(description="A Stripe customer portal session; `returnUrl` must be allow-listed.")
    async def create_billing_portal_session(
        self, info: Info, input: CreateBillingPortalSessionInput
    ) -> CreateBillingPortalSessionPayload:
        async def work(account: Account) -> CreateBillingPortalSessionSuccess:
            context = info.context
            allowlist = context.settings.portal_return_url_allowlist
            url = await portal.create_portal_session(
                context.session_factory,
                Scope.of(context.principal),
                context.stripe,
                account.pk,
                input.return_url,
                allowlist,
            )
            return CreateBillingPortalSessionSuccess(url=url)

        return await on_account(info, input.account_id, CREATE_BILLING_PORTAL_SESSION_ERRORS, work)
