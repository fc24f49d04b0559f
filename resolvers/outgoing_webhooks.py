"""Outgoing webhook mutations: an account's members and the partners that manage it (and admins).

The URL is checked (its name resolved) before the transaction begins: a lookup is network, and no connection
is held across it. The delivery worker checks it again before every attempt.
"""

from collections.abc import Awaitable, Callable

import strawberry
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.keys.service import Principal
from billing.outgoing_webhooks import service as webhooks_outgoing
from models import WebhookEndpoint as WebhookEndpointModel
from models.types import utcnow
from resolvers.mutation import answered, on_account
from schema.accounts import Account
from schema.context import Info
from schema.node import from_global_id, to_global_id
from schema.outgoing_webhooks import (
    CREATE_WEBHOOK_ENDPOINT_ERRORS,
    DELETE_WEBHOOK_ENDPOINT_ERRORS,
    ROTATE_WEBHOOK_SECRET_ERRORS,
    SEND_TEST_WEBHOOK_ERRORS,
    UPDATE_WEBHOOK_ENDPOINT_ERRORS,
    CreateWebhookEndpointInput,
    CreateWebhookEndpointPayload,
    CreateWebhookEndpointSuccess,
    DeleteWebhookEndpointPayload,
    DeleteWebhookEndpointSuccess,
    RotateWebhookSecretPayload,
    RotateWebhookSecretSuccess,
    SendTestWebhookPayload,
    SendTestWebhookSuccess,
    UpdateWebhookEndpointInput,
    UpdateWebhookEndpointPayload,
    UpdateWebhookEndpointSuccess,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointInput,
)

# A service call on one endpoint, found by id through the caller's scope.
OnEndpoint = Callable[[AsyncSession, Principal, int], Awaitable[WebhookEndpointModel]]


async def _on_endpoint(info: Info, input: WebhookEndpointInput, change: OnEndpoint) -> WebhookEndpointModel:
    endpoint_id = from_global_id(input.webhook_endpoint_id, "WebhookEndpoint", "webhookEndpointId")
    async with info.context.atomic() as session:
        return await change(session, info.context.principal, endpoint_id)


@strawberry.type
class WebhookEndpointMutation:
    @strawberry.mutation(description="A new endpoint; the answer shows its signing secret, this once.")
    async def create_webhook_endpoint(
        self, info: Info, input: CreateWebhookEndpointInput
    ) -> CreateWebhookEndpointPayload:
        async def work(account: Account) -> CreateWebhookEndpointSuccess:
            valid = await webhooks_outgoing.vetted(
                input.to_domain(),
                loopback_allowed=info.context.settings.webhook_loopback_allowed,
                creating=True,
            )
            async with info.context.atomic() as session:
                endpoint = await webhooks_outgoing.create_endpoint(
                    session, info.context.principal, account.pk, valid, now=utcnow()
                )
            return CreateWebhookEndpointSuccess(
                webhook_endpoint=WebhookEndpoint.from_model(endpoint), secret=endpoint.secret
            )

        return await on_account(info, input.account_id, CREATE_WEBHOOK_ENDPOINT_ERRORS, work)

    @strawberry.mutation
    async def update_webhook_endpoint(
        self, info: Info, input: UpdateWebhookEndpointInput
    ) -> UpdateWebhookEndpointPayload:
        async def work() -> UpdateWebhookEndpointSuccess:
            endpoint_id = from_global_id(input.webhook_endpoint_id, "WebhookEndpoint", "webhookEndpointId")
            valid = await webhooks_outgoing.vetted(
                input.to_domain(),
                loopback_allowed=info.context.settings.webhook_loopback_allowed,
                creating=False,
            )
            async with info.context.atomic() as session:
                endpoint = await webhooks_outgoing.update_endpoint(
                    session, info.context.principal, endpoint_id, valid, now=utcnow()
                )
            return UpdateWebhookEndpointSuccess(webhook_endpoint=WebhookEndpoint.from_model(endpoint))

        return await answered(UPDATE_WEBHOOK_ENDPOINT_ERRORS, None, work)

    @strawberry.mutation(description="Deletes the endpoint and its deliveries.")
    async def delete_webhook_endpoint(
        self, info: Info, input: WebhookEndpointInput
    ) -> DeleteWebhookEndpointPayload:
        async def work() -> DeleteWebhookEndpointSuccess:
            endpoint = await _on_endpoint(info, input, webhooks_outgoing.delete_endpoint)
            assert endpoint.id is not None
            return DeleteWebhookEndpointSuccess(
                deleted_webhook_endpoint_id=to_global_id("WebhookEndpoint", endpoint.id)
            )

        return await answered(DELETE_WEBHOOK_ENDPOINT_ERRORS, None, work)

    @strawberry.mutation(
        description="A new signing secret, shown this once; pending deliveries are signed with it."
    )
    async def rotate_webhook_secret(
        self, info: Info, input: WebhookEndpointInput
    ) -> RotateWebhookSecretPayload:
        async def work() -> RotateWebhookSecretSuccess:
            endpoint = await _on_endpoint(
                info,
                input,
                lambda session, principal, endpoint_id: webhooks_outgoing.rotate_secret(
                    session, principal, endpoint_id, now=utcnow()
                ),
            )
            return RotateWebhookSecretSuccess(
                webhook_endpoint=WebhookEndpoint.from_model(endpoint), secret=endpoint.secret
            )

        return await answered(ROTATE_WEBHOOK_SECRET_ERRORS, None, work)

    @strawberry.mutation(description="Queues a `webhook.test` event for the endpoint, sent in its turn.")
    async def send_test_webhook(self, info: Info, input: WebhookEndpointInput) -> SendTestWebhookPayload:
        async def work() -> SendTestWebhookSuccess:
            endpoint_id = from_global_id(input.webhook_endpoint_id, "WebhookEndpoint", "webhookEndpointId")
            async with info.context.atomic() as session:
                delivery = await webhooks_outgoing.send_test(
                    session, info.context.principal, endpoint_id, now=utcnow()
                )
            return SendTestWebhookSuccess(delivery=WebhookDelivery.from_model(delivery))

        return await answered(SEND_TEST_WEBHOOK_ERRORS, None, work)
