"""The addFunds entry point: check the caller may act on the account, call the top-up service, map the result.
The service calls Stripe, so it takes the session factory and never holds a connection while Stripe answers."""

import strawberry

from billing.scope import Scope
from billing.topups import service as payments
from resolvers.mutation import on_account
from resolvers.payment_methods import payment_method_id
from schema.accounts import Account
from schema.context import Info
from schema.ledger import Transaction
from schema.money import Money
from schema.topups import ADD_FUNDS_ERRORS, AddFundsInput, AddFundsPayload, AddFundsSuccess, TopUpStatus


@strawberry.type
class TopUpMutation:
    @strawberry.mutation(description="Top up the balance from a saved card.")
    async def add_funds(self, info: Info, input: AddFundsInput) -> AddFundsPayload:
        async def work(account: Account) -> AddFundsSuccess:
            context = info.context
            request = payments.AddFundsRequest(
                account_id=account.pk,
                payment_method_id=payment_method_id(input.payment_method_id, "paymentMethodId"),
                amount=input.amount,
                idempotency_key=input.idempotency_key,
            )
            top_up = await payments.add_funds(
                context.session_factory,
                Scope.of(context.principal),
                context.stripe,
                context.settings,
                request,
            )
            return AddFundsSuccess(
                status=TopUpStatus(top_up.status),
                transaction=Transaction.from_model(top_up.transaction, account.country),
                balance=Money.of(top_up.balance_minor, account.currency, account.country),
                client_secret=top_up.client_secret,
            )

        return await on_account(info, input.account_id, ADD_FUNDS_ERRORS, work)
