"""The typed error for a caller whose API key may not perform a mutation at all."""

import strawberry

from schema.errors import Error


@strawberry.type(description="This API key may not do this (e.g. only usage reporters record usage).")
class PermissionDeniedError(Error):
    pass
