"""The root of every expected (domain) failure. Each service module defines its own subclasses."""

from collections.abc import Callable


class DomainError(Exception):
    """A failure the caller can act on; the GraphQL layer maps each subclass to a typed error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    """A request argument the client can fix: the message and `argument` say which and why. The domain names
    its own arguments; an edge that spells one differently passes the error on `named` as its clients do."""

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"{argument}: {problem}")
        self.argument = argument
        self.problem = problem

    def named(self, argument_name: Callable[[str], str]) -> "InvalidArgument":
        """The same error, naming its argument as `argument_name` spells it."""
        return InvalidArgument(argument_name(self.argument), self.problem)


class NotFound(DomainError):
    """The thing does not exist or the caller may not see it: the two are deliberately indistinguishable."""


def as_named_here(name: str) -> str:
    """Field names as the domain spells them. Errors that name fields have `describe(field_name)`, so the API's
    edge can name them as its clients do (`legalName`, not `legal_name`)."""
    return name
