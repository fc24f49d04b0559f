"""The schema: every domain's Query and Mutation types merged, with masking, limits and caches."""

from collections.abc import Callable

import strawberry
from strawberry.extensions import (
    DisableIntrospection,
    MaskErrors,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from resolvers.accounts import AccountQuery
from schema.errors import should_mask_error
from schema.scalars import SCALARS

Query = merge_types("Query", (AccountQuery,))


def build_schema(*, introspection: bool = True) -> strawberry.Schema:
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: MaskErrors(should_mask_error=should_mask_error),
        lambda: QueryDepthLimiter(max_depth=12),
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
    ]
    if not introspection:
        extensions.append(DisableIntrospection)
    return strawberry.Schema(
        query=Query,
        config=StrawberryConfig(auto_camel_case=True, scalar_map=SCALARS),
        extensions=extensions,
    )


def sdl() -> str:
    """The schema as committed in schema.graphql."""
    return build_schema().as_str() + "\n"
