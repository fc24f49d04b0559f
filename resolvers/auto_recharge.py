"""autoRecharge: the account's people save the settings; the payload shows them with the engine's state."""

from typing import cast

import strawberry

from billing import auto_recharge
from resolvers.accounts import named_or_own_account
from resolvers.context import Info
from schema.auto_recharge import (
    EXPECTED_ERRORS,
    AutoRecharge,
    AutoRechargeInput,
    AutoRechargePayload,
    AutoRechargeSuccess,
    to_error,
)
from schema.node import from_global_id


@strawberry.type
class AutoRechargeMutation:
    @strawberry.mutation(
        description="Save the auto-recharge settings; needs an active lead plan to turn it on."
    )
    async def auto_recharge(self, info: Info, input: AutoRechargeInput) -> AutoRechargePayload:
        principal = info.context.principal
        account = await named_or_own_account(info, input.account_id, "accountId")
        account_id, country = account.pk, account.country
        method = input.payment_method_id
        request = auto_recharge.AutoRechargeInput(
            enabled=input.enabled,
            threshold=input.threshold,
            amount=input.amount,
            monthly_limit=input.monthly_limit,
            payment_method_id=from_global_id(method, "PaymentMethod", "paymentMethodId") if method else None,
        )
        try:
            async with info.context.atomic() as session:
                await auto_recharge.save_settings(
                    session, principal, account_id, request, limits=info.context.settings
                )
                view = (await auto_recharge.auto_recharge_views(session, principal, [account_id]))[account_id]
        except EXPECTED_ERRORS as error:
            return cast(AutoRechargePayload, to_error(error, country))
        return AutoRechargeSuccess(auto_recharge=AutoRecharge.of(view, country))
