"""The schema: every domain's Query, Mutation and Subscription types merged, with masking, limits and caches."""

import logging
from collections.abc import Callable

import strawberry
from graphql import GraphQLError
from strawberry.extensions import DisableIntrospection, SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from resolvers.accounts import AccountQuery
from resolvers.auto_recharge import AutoRechargeMutation
from resolvers.company import CompanyMutation
from resolvers.events import AccountSubscription
from resolvers.lead_plans import LeadPlanMutation
from resolvers.outgoing_webhooks import WebhookEndpointMutation
from resolvers.payment_methods import PaymentMethodMutation
from resolvers.topups import TopUpMutation
from resolvers.usage import UsageMutation
from root import variables
from root.execution import LeanExecutionContext, call_resolvers_directly
from root.limits import OperationLimits, limits_extension
from root.observability import ObservedOperation
from root.suggestions import HideSuggestions
from schema.errors import ErrorPolicy
from schema.scalars import SCALARS

Query = merge_types("Query", (AccountQuery,))
Mutation = merge_types(
    "Mutation",
    (
        CompanyMutation,
        PaymentMethodMutation,
        TopUpMutation,
        UsageMutation,
        LeadPlanMutation,
        AutoRechargeMutation,
        WebhookEndpointMutation,
    ),
)
Subscription = merge_types("Subscription", (AccountSubscription,))

logger = logging.getLogger("billing.graphql")


class BillingSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """One short INFO line per error (Strawberry's default logs each at ERROR with its traceback). Most are
        a client's own mistakes (bad input, an account it may not see, a limit): answers, not faults. A crash is
        logged at ERROR with its traceback once, where it is masked (schema/errors.py, server_graphql.py)."""
        for error in errors:
            logger.info("graphql error", extra={"path": error.path, "error": error.message[:200]})


def build_schema(*, introspection: bool = True, limits: OperationLimits | None = None) -> strawberry.Schema:
    extensions: list[Callable[[], SchemaExtension]] = [
        ErrorPolicy,
        # Parses, validates and checks the operation limits, caching all three per document.
        limits_extension(limits or OperationLimits()),
        ObservedOperation,
    ]
    if not introspection:
        # Suggestions would rebuild the hidden schema a name at a time.
        extensions += [DisableIntrospection, HideSuggestions]
    schema = BillingSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(auto_camel_case=True, scalar_map=SCALARS),
        extensions=extensions,
        execution_context_class=LeanExecutionContext.for_schema(),
    )
    call_resolvers_directly(schema)
    variables.install()
    return schema


def sdl() -> str:
    """The schema as committed in schema.graphql."""
    return build_schema().as_str() + "\n"
