"""The `Error` interface every typed mutation error implements, and the masking of unexpected errors."""

import strawberry
from graphql import GraphQLError

from billing.errors import DomainError


@strawberry.interface(description="An expected failure the client can act on; `message` is for people.")
class Error:
    message: str


def should_mask_error(error: GraphQLError) -> bool:
    """Validation errors and domain errors (bad arguments, not found) stay visible; anything else is masked."""
    original = error.original_error
    return original is not None and not isinstance(original, DomainError)
