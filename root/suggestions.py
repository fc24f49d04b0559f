"""No "Did you mean ...?" where the schema is hidden: the suggestions would hand it out a name at a time."""

from collections.abc import Iterator

from strawberry.extensions import SchemaExtension

# graphql-core appends its suggestions as the message's last sentence (`graphql.pyutils.did_you_mean`).
SUGGESTION = " Did you mean "


def without_suggestion(message: str) -> str:
    head, found, _ = message.partition(SUGGESTION)
    return head if found else message


class HideSuggestions(SchemaExtension):
    """Strips the suggestion from every error of the result: validation, variable coercion and execution.

    graphql-core can leave them out itself (`hide_suggestions`), but Strawberry passes that to neither its
    validation nor its execution.
    """

    def on_operation(self) -> Iterator[None]:
        yield
        for error in getattr(self.execution_context.result, "errors", None) or []:
            error.message = without_suggestion(error.message)
