"""The root of every expected (domain) failure. Each service module defines its own subclasses."""


class DomainError(Exception):
    """A failure the caller can act on; the GraphQL layer maps each subclass to a typed error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """The thing does not exist or the caller may not see it: the two are deliberately indistinguishable."""


def as_named_here(name: str) -> str:
    """Field names as the domain spells them. Errors that name fields have `describe(field_name)`, so the API's
    edge can name them as its clients do (`legalName`, not `legal_name`)."""
    return name
