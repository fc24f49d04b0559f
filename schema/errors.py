"""The `Error` interface of typed mutation errors, and how GraphQL errors reach the client.

Expected failures raised as domain errors (a bad argument, something not found) stay visible, with a
machine-readable `extensions.code` (and `argument` where one is to blame). Anything else is logged and
masked (the mutation's own unit of work has already been rolled back). A database too busy to serve the
operation marks the context, and the HTTP edge answers 503 with Retry-After. Subscription results over the
WebSocket are shaped the same, as each is sent (`ResultShaping`).
"""

import logging
import re
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

import strawberry
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import FieldNode, GraphQLError, OperationType, get_operation_ast
from sqlalchemy.exc import DBAPIError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionContext, ExecutionResult, StreamExecutionResult

from billing.db import is_busy
from billing.errors import DomainError, InvalidArgument, NotFound

logger = logging.getLogger("billing.graphql")


@strawberry.interface(description="An expected failure the client can act on; `message` is for people.")
class Error:
    message: str


E = TypeVar("E", bound=DomainError)
# The payload union of one mutation: every answer built for it must be one of its members.
P = TypeVar("P")
P_co = TypeVar("P_co", covariant=True)
# What a build function may use besides the error: the country of the account acted on (money in messages is
# formatted in its locale), or None for mutations not scoped to one account (lead plans, usage batches).
W = TypeVar("W")


class Answer(Generic[P, W]):
    """How one kind of domain error is answered in a mutation's union. Made by `on`, which checks the types."""

    def __init__(self, kind: type[DomainError], build: Callable[[DomainError, W], P]) -> None:
        self.kind = kind
        self.build = build


def on(kind: type[E], build: Callable[[E, W], P]) -> Answer[P, W]:
    """Answer a `kind` error (or a subclass of it) with what `build` makes of it."""

    def answer(error: DomainError, where: W) -> P:
        if not isinstance(error, kind):  # DeclaredErrors picks an answer by the error's class
            raise error
        return build(error, where)

    return Answer(kind, answer)


class DeclaredErrors(Generic[P, W]):
    """A mutation's expected failures and the union member each becomes, declared once next to the union and
    annotated with it (`DeclaredErrors[AddFundsPayload, str]`), so mypy rejects an answer outside the union.
    Anything else raised is not an expected failure of that mutation: it is raised again (a top-level
    BAD_USER_INPUT for an InvalidArgument, masked as an internal error otherwise)."""

    def __init__(self, *answers: Answer[P, W]) -> None:
        self._answers: dict[type[DomainError], Callable[[DomainError, W], P]] = {}
        for answer in answers:
            if answer.kind in self._answers:
                raise ValueError(f"{answer.kind.__name__} is declared twice")
            self._answers[answer.kind] = answer.build

    def answer(self, error: DomainError, where: W) -> P:
        """The union member for `error` (the most specific declared class wins), or `error` raised again."""
        for kind in type(error).__mro__:
            build = self._answers.get(kind)
            if build is not None:
                return build(error, where)
        raise error


class _FromMessage(Protocol[P_co]):
    def __call__(self, *, message: str) -> P_co: ...


def with_message(error_type: _FromMessage[P]) -> Callable[[DomainError, object], P]:
    """A build function for union members that carry nothing but the domain error's message."""

    def build(error: DomainError, _where: object) -> P:
        return error_type(message=error.message)

    return build


def error_code(error: DomainError) -> str:
    if isinstance(error, InvalidArgument):
        return "BAD_USER_INPUT"
    if isinstance(error, NotFound):
        return "NOT_FOUND"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).upper()


# graphql-core's while the operation runs (HTTP), Strawberry's once it is handed out (each streamed result).
Result = GraphQLExecutionResult | ExecutionResult


class ResultShaping(SchemaExtension):
    """An extension that reshapes the errors of every result a client gets, whatever carries it: over HTTP the
    operation's result when it ends, over the WebSocket each result of a subscription before it is sent. Hooks
    run in the order of the schema's extensions here, in reverse in `on_operation`: a `shape` must not depend
    on another extension's having run first."""

    def __init__(self, *, execution_context: ExecutionContext | None = None) -> None:
        super().__init__(execution_context=execution_context)
        self._streamed = False

    def shape(self, result: Result) -> None:
        raise NotImplementedError

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if not self._streamed and isinstance(result, Result):  # a stream's were shaped as sent
            self.shape(result)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        self._streamed = True
        if isinstance(result, Result):
            self.shape(result)
        yield


def is_statement_timeout(error: BaseException | None) -> bool:
    # SQLSTATE 57014 (query_canceled): what PostgreSQL raises when statement_timeout ends a statement.
    return isinstance(error, DBAPIError) and getattr(error.orig, "sqlstate", None) == "57014"


def _is_request_error(error: GraphQLError) -> bool:
    """About the request, safe to show: a parse or validation error, a variable graphql-core could not coerce
    (its error chained), an operation Strawberry would not run (the transport words it), or a statement
    cancelled at its timeout (which the limits name)."""
    original = error.original_error
    return (
        original is None
        or (error.path is None and isinstance(original, GraphQLError))
        or isinstance(original, InvalidOperationTypeError | CannotGetOperationTypeError)
        or is_statement_timeout(original)
    )


class ErrorPolicy(ResultShaping):
    def shape(self, result: Result) -> None:
        if result.errors:
            result.errors = [self._shape(self._located(error)) for error in result.errors]

    def _located(self, error: GraphQLError) -> GraphQLError:
        """An error a subscription's event stream raised (graphql-core leaves it without a location), at the
        subscription's root field, as a resolver's error is."""
        if error.path is not None or _is_request_error(error):
            return error
        context = self.execution_context
        document = context.graphql_document
        operation = get_operation_ast(document, context.operation_name) if document is not None else None
        if operation is None or operation.operation is not OperationType.SUBSCRIPTION:
            return error
        field = operation.selection_set.selections[0]  # a subscription selects one root field
        if not isinstance(field, FieldNode):
            return error
        name = (field.alias or field.name).value
        return GraphQLError(error.message, field, path=[name], original_error=error.original_error)

    def _shape(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if original is None or _is_request_error(error):
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


@strawberry.type
class PaymentProviderUnavailableError(Error):
    pass


@strawberry.type(
    description="The payment provider refused the request itself; retrying it unchanged will not help."
)
class PaymentProviderRejectedError(Error):
    pass


provider_unavailable = with_message(PaymentProviderUnavailableError)


provider_rejected = with_message(PaymentProviderRejectedError)
