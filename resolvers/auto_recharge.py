"""autoRecharge: the account's people save the settings; the payload shows them with the engine's state."""

import strawberry

from billing.auto_recharge import service as auto_recharge
from resolvers.mutation import on_account
from schema.accounts import Account
from schema.auto_recharge import (
    AUTO_RECHARGE_ERRORS,
    AutoRecharge,
    AutoRechargeInput,
    AutoRechargePayload,
    AutoRechargeSuccess,
)
from schema.context import Info
from schema.node import from_global_id


@strawberry.type
class AutoRechargeMutation:
    @strawberry.mutation(
        description="Save the auto-recharge settings; needs an active lead plan to turn it on."
    )
    async def auto_recharge(self, info: Info, input: AutoRechargeInput) -> AutoRechargePayload:
        async def work(account: Account) -> AutoRechargeSuccess:
            principal, method = info.context.principal, input.payment_method_id
            request = auto_recharge.AutoRechargeInput(
                enabled=input.enabled,
                threshold=input.threshold,
                amount=input.amount,
                monthly_limit=input.monthly_limit,
                payment_method_id=from_global_id(method, "PaymentMethod", "paymentMethodId")
                if method
                else None,
            )
            async with info.context.atomic() as session:
                await auto_recharge.save_settings(
                    session, principal, account.pk, request, limits=info.context.settings
                )
                views = await auto_recharge.auto_recharge_views(session, principal, [account.pk])
            return AutoRechargeSuccess(auto_recharge=AutoRecharge.of(views[account.pk], account.country))

        return await on_account(info, input.account_id, AUTO_RECHARGE_ERRORS, work)
