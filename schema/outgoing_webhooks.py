"""Outgoing webhooks (Standard Webhooks): endpoints, their deliveries, and the mutations that manage them, each
with its own union and declared errors. The signing secret appears only in the create and rotate answers."""

from datetime import datetime
from typing import Annotated

import strawberry

from billing.errors import NotFound
from billing.outgoing_webhooks import service as webhooks_outgoing
from models import WebhookDelivery as WebhookDeliveryModel
from models import WebhookDeliveryStatus, WebhookEndpointStatus
from models import WebhookEndpoint as WebhookEndpointModel
from schema.company import FieldError
from schema.errors import DeclaredErrors, Error, on, with_message
from schema.node import Node, to_global_id
from schema.pagination import Connection
from schema.permissions import PermissionDeniedError

strawberry.enum(WebhookEndpointStatus)
strawberry.enum(WebhookDeliveryStatus)

_EVENT_TYPES_HELP = "Among: " + ", ".join(webhooks_outgoing.EVENT_TYPES) + "."
_FIELD_NAMES = {"url": "url", "event_types": "eventTypes", "description": "description"}


@strawberry.type(description="Where an account's webhook events are sent, signed per Standard Webhooks.")
class WebhookEndpoint(Node):
    url: str
    description: str
    event_types: list[str]
    status: WebhookEndpointStatus = strawberry.field(
        description="FAILING once a delivery ran out of retries (active again after a success); DISABLED by "
        "its owner: nothing is queued for it."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_model(cls, row: WebhookEndpointModel) -> "WebhookEndpoint":
        assert row.id is not None
        return cls(
            id=to_global_id("WebhookEndpoint", row.id),
            url=row.url,
            description=row.description,
            event_types=webhooks_outgoing.subscribed(row),
            status=WebhookEndpointStatus(row.status),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@strawberry.type(description="One event sent (or to be sent) to one endpoint, with its latest attempt.")
class WebhookDelivery(Node):
    endpoint_id: strawberry.ID
    event_type: str
    webhook_id: str = strawberry.field(description="The `webhook-id` header: the same on every attempt.")
    status: WebhookDeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = strawberry.field(description="When pending: the next attempt.")
    last_response_status: int | None
    last_response_body: str | None = strawberry.field(description="Its first 1,000 characters.")
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def from_model(cls, row: WebhookDeliveryModel) -> "WebhookDelivery":
        assert row.id is not None
        pending = row.status == WebhookDeliveryStatus.PENDING
        return cls(
            id=to_global_id("WebhookDelivery", row.id),
            endpoint_id=to_global_id("WebhookEndpoint", row.endpoint_id),
            event_type=row.event_type,
            webhook_id=row.webhook_id,
            status=WebhookDeliveryStatus(row.status),
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at if pending else None,
            last_response_status=row.last_response_status,
            last_response_body=row.last_response_body,
            last_error=row.last_error,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
        )


WebhookDeliveryConnection = Connection[WebhookDelivery]


@strawberry.input
class CreateWebhookEndpointInput:
    account_id: strawberry.ID | None = strawberry.field(
        default=None, description="The caller's own account when omitted."
    )
    url: str = strawberry.field(description="https (in production), at most 2,048 characters.")
    event_types: list[str] = strawberry.field(description=_EVENT_TYPES_HELP)
    description: str = ""

    def to_domain(self) -> webhooks_outgoing.EndpointInput:
        return webhooks_outgoing.EndpointInput(
            url=self.url, event_types=self.event_types, description=self.description
        )


@strawberry.input(description="Omitted fields stay as they are.")
class UpdateWebhookEndpointInput:
    webhook_endpoint_id: strawberry.ID
    url: str | None = None
    event_types: list[str] | None = strawberry.field(default=None, description=_EVENT_TYPES_HELP)
    description: str | None = None
    enabled: bool | None = strawberry.field(
        default=None, description="false disables it; true enables it again (a failing one too)."
    )

    def to_domain(self) -> webhooks_outgoing.EndpointInput:
        return webhooks_outgoing.EndpointInput(
            url=self.url, event_types=self.event_types, description=self.description, enabled=self.enabled
        )


@strawberry.input
class WebhookEndpointInput:
    webhook_endpoint_id: strawberry.ID


@strawberry.type
class CreateWebhookEndpointSuccess:
    webhook_endpoint: WebhookEndpoint
    secret: str = strawberry.field(description="The signing secret (whsec_...): shown this once.")


@strawberry.type
class UpdateWebhookEndpointSuccess:
    webhook_endpoint: WebhookEndpoint


@strawberry.type
class DeleteWebhookEndpointSuccess:
    deleted_webhook_endpoint_id: strawberry.ID


@strawberry.type
class RotateWebhookSecretSuccess:
    webhook_endpoint: WebhookEndpoint
    secret: str = strawberry.field(description="The new signing secret (whsec_...): shown this once.")


@strawberry.type
class SendTestWebhookSuccess:
    delivery: WebhookDelivery


@strawberry.type
class InvalidWebhookEndpointError(Error):
    field_errors: list[FieldError]


@strawberry.type(description="An account has at most 10 webhook endpoints.")
class WebhookEndpointLimitError(Error):
    pass


@strawberry.type
class WebhookEndpointNotFoundError(Error):
    pass


CreateWebhookEndpointPayload = Annotated[
    CreateWebhookEndpointSuccess
    | InvalidWebhookEndpointError
    | WebhookEndpointLimitError
    | PermissionDeniedError,
    strawberry.union("CreateWebhookEndpointPayload"),
]
UpdateWebhookEndpointPayload = Annotated[
    UpdateWebhookEndpointSuccess
    | InvalidWebhookEndpointError
    | WebhookEndpointNotFoundError
    | PermissionDeniedError,
    strawberry.union("UpdateWebhookEndpointPayload"),
]
DeleteWebhookEndpointPayload = Annotated[
    DeleteWebhookEndpointSuccess | WebhookEndpointNotFoundError | PermissionDeniedError,
    strawberry.union("DeleteWebhookEndpointPayload"),
]
RotateWebhookSecretPayload = Annotated[
    RotateWebhookSecretSuccess | WebhookEndpointNotFoundError | PermissionDeniedError,
    strawberry.union("RotateWebhookSecretPayload"),
]
SendTestWebhookPayload = Annotated[
    SendTestWebhookSuccess | WebhookEndpointNotFoundError | PermissionDeniedError,
    strawberry.union("SendTestWebhookPayload"),
]


def invalid_endpoint(
    error: webhooks_outgoing.InvalidWebhookEndpoint, _where: object
) -> InvalidWebhookEndpointError:
    fields = [FieldError(field=_FIELD_NAMES[name], message=why) for name, why in error.problems]
    message = "; ".join(f"{_FIELD_NAMES[name]}: {why}" for name, why in error.problems)
    return InvalidWebhookEndpointError(message=message, field_errors=fields)


CREATE_WEBHOOK_ENDPOINT_ERRORS: DeclaredErrors[CreateWebhookEndpointPayload, str] = DeclaredErrors(
    on(webhooks_outgoing.InvalidWebhookEndpoint, invalid_endpoint),
    on(webhooks_outgoing.WebhookEndpointLimitReached, with_message(WebhookEndpointLimitError)),
    on(webhooks_outgoing.WebhookEndpointManagementDenied, with_message(PermissionDeniedError)),
)
# The others find the endpoint through the caller's scope: someone else's answers like a missing one.
UPDATE_WEBHOOK_ENDPOINT_ERRORS: DeclaredErrors[UpdateWebhookEndpointPayload, None] = DeclaredErrors(
    on(webhooks_outgoing.InvalidWebhookEndpoint, invalid_endpoint),
    on(webhooks_outgoing.WebhookEndpointManagementDenied, with_message(PermissionDeniedError)),
    on(NotFound, with_message(WebhookEndpointNotFoundError)),
)
DELETE_WEBHOOK_ENDPOINT_ERRORS: DeclaredErrors[DeleteWebhookEndpointPayload, None] = DeclaredErrors(
    on(webhooks_outgoing.WebhookEndpointManagementDenied, with_message(PermissionDeniedError)),
    on(NotFound, with_message(WebhookEndpointNotFoundError)),
)
ROTATE_WEBHOOK_SECRET_ERRORS: DeclaredErrors[RotateWebhookSecretPayload, None] = DeclaredErrors(
    on(webhooks_outgoing.WebhookEndpointManagementDenied, with_message(PermissionDeniedError)),
    on(NotFound, with_message(WebhookEndpointNotFoundError)),
)
SEND_TEST_WEBHOOK_ERRORS: DeclaredErrors[SendTestWebhookPayload, None] = DeclaredErrors(
    on(webhooks_outgoing.WebhookEndpointManagementDenied, with_message(PermissionDeniedError)),
    on(NotFound, with_message(WebhookEndpointNotFoundError)),
)
