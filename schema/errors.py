"""The `Error` interface of typed mutation errors, and how GraphQL errors reach the client.

Expected failures raised as domain errors (a bad argument, something not found) stay visible, with a
machine-readable `extensions.code` (and `argument` where one is to blame). Anything else is logged and
masked (the mutation's own unit of work has already been rolled back). A database too busy to serve the
operation marks the context, and the HTTP edge answers 503 with Retry-After.
"""

import logging
import re
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from billing.db import is_busy
from billing.errors import DomainError, InvalidArgument, NotFound
from billing.observability.request import current_request_id

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


class ErrorPolicy(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            result.errors = [self._with_request_id(self._shape(error)) for error in errors]

    @staticmethod
    def _with_request_id(error: GraphQLError) -> GraphQLError:
        """The request's id (also in the X-Request-Id header and on its log lines), for support to find it."""
        request_id = current_request_id()
        if request_id is None:
            return error
        # A new error: parse and validation errors are cached per query text and shared between requests.
        return GraphQLError(
            error.message,
            error.nodes,
            error.source,
            error.positions,
            error.path,
            error.original_error,
            extensions={**(error.extensions or {}), "requestId": request_id},
        )

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
