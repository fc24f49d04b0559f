"""Tells the request's observation (billing.observability.request) which GraphQL operation ran and how it
ended, for the per-operation metrics, the request's log line and its trace span. Hooks run once per request,
never per field."""

from collections.abc import Iterator

from opentelemetry import trace
from strawberry.extensions import SchemaExtension

from billing.observability.request import current_request


class ObservedOperation(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        # Reached only by a document that validated: the name is one the schema accepted.
        context = self.execution_context
        observation = current_request()
        if observation is not None:
            observation.executed = True
            observation.operation_name = context.operation_name
        span = trace.get_current_span()  # the request's server span while tracing; a no-op otherwise
        if span.is_recording():
            span.set_attribute("graphql.operation.type", context.operation_type.value)
            if context.operation_name:
                span.set_attribute("graphql.operation.name", context.operation_name)
        yield

    def on_operation(self) -> Iterator[None]:
        yield
        observation = current_request()
        if observation is not None:
            observation.reached_schema = True
            observation.errors = bool(getattr(self.execution_context.result, "errors", None))
