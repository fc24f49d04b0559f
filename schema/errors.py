"""The `Error` interface of typed mutation errors, and how GraphQL errors reach the client.

Expected failures raised as domain errors (a bad argument, something not found) stay visible, with a
machine-readable `extensions.code` (and `argument` where one is to blame). Anything else is logged and
masked (the mutation's own unit of work has already been rolled back). A database too busy to serve the
operation marks the context, and the HTTP edge answers 503 with Retry-After.
"""

import logging
import re
from collections.abc import Iterator

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from billing.db import is_busy
from billing.errors import DomainError, NotFound
from billing.pagination import InvalidArgument

logger = logging.getLogger("billing.graphql")


@strawberry.interface(description="An expected failure the client can act on; `message` is for people.")
class Error:
    message: str


def error_code(error: DomainError) -> str:
    if isinstance(error, InvalidArgument):
        return "BAD_USER_INPUT"
    if isinstance(error, NotFound):
        return "NOT_FOUND"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).upper()


class ErrorPolicy(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            result.errors = [self._shape(error) for error in errors]

    def _shape(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if original is None:  # a validation or parse error: about the request, safe to show
            return error
        if isinstance(original, DomainError):
            extensions = {**(error.extensions or {}), "code": error_code(original)}
            if isinstance(original, InvalidArgument):
                extensions["argument"] = original.argument
            error.extensions = extensions
            return error
        context = self.execution_context.context
        if is_busy(original):
            if context is not None:
                context.database_busy = True
            return GraphQLError(
                "The service is busy; retry shortly.",
                nodes=error.nodes,
                path=error.path,
                extensions={"code": "SERVICE_UNAVAILABLE"},
            )
        logger.error("unexpected error in %s", error.path, exc_info=original)
        return GraphQLError(
            "Unexpected error.",
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL_SERVER_ERROR"},
        )
