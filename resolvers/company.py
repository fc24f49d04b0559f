"""Mutation entry points for the company profile: check the caller may act on the account, call one service, map the result."""

import strawberry

from billing.company import service as company
from billing.scope import Scope
from resolvers.mutation import on_account
from schema.accounts import Account
from schema.company import (
    UPDATE_COMPANY_ERRORS,
    Company,
    UpdateCompanyInput,
    UpdateCompanyPayload,
    UpdateCompanySuccess,
)
from schema.context import Info


@strawberry.type
class CompanyMutation:
    @strawberry.mutation(description="Save the company profile; the Stripe customer follows.")
    async def update_company(self, info: Info, input: UpdateCompanyInput) -> UpdateCompanyPayload:
        async def work(account: Account) -> UpdateCompanySuccess:
            context = info.context
            saved = await company.save_company(
                context.session_factory,
                Scope.of(context.principal),
                context.stripe,
                account.pk,
                input.to_domain(),
            )
            return UpdateCompanySuccess(company=Company.from_model(saved))

        return await on_account(info, input.account_id, UPDATE_COMPANY_ERRORS, work)
