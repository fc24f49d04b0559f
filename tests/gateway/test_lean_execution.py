"""root/execution.py's short path answers plain fields exactly as graphql-core's full path: same data, same
errors at the same paths, and null propagation from a failing non-null field."""

from enum import Enum
from typing import Any

import pytest
import strawberry
from graphql import GraphQLObjectType
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.execution import ExecutionResult

from root.execution import LeanExecutionContext, PlainField


@strawberry.enum
class Colour(Enum):
    RED = "red"


@strawberry.type
class Leaf:
    text: str
    maybe: str | None
    count: int
    colour: Colour


@strawberry.type
class Holder:
    leaf: Leaf
    maybe_leaf: Leaf | None
    leaves: list[Leaf]

    @strawberry.field
    def computed(self) -> str:
        return self.leaf.text.upper()


def holder(**leaf: Any) -> Holder:
    values = {"text": "a", "maybe": None, "count": 1, "colour": Colour.RED} | leaf
    made = Leaf(**values)
    return Holder(leaf=made, maybe_leaf=made, leaves=[made])


# A case per way a plain field can end: fine, a null in a non-null leaf (propagated to the nullable parent, or
# to the root through non-null parents), a value the scalar refuses, a missing attribute.
CASES = {
    "fine": holder(),
    "null in non-null": holder(text=None),
    "refused by Int": holder(count="many"),
    "refused by the enum": holder(colour="blue"),
}


@strawberry.type
class Query:
    @strawberry.field
    def holders(self) -> list[Holder | None]:
        return list(CASES.values())

    @strawberry.field
    def strict(self, case: str) -> Holder:
        return CASES[case]

    @strawberry.field
    def broken(self) -> Holder | None:
        return Holder(leaf=object(), maybe_leaf=None, leaves=[])  # type: ignore[arg-type]


DOCUMENTS = [
    "{ holders { computed leaf { text maybe count colour } maybeLeaf { text count } leaves { text colour } } }",
    "{ holders { maybeLeaf { maybe colour } } }",
    '{ strict(case: "null in non-null") { leaf { text } } }',
    '{ strict(case: "refused by Int") { maybeLeaf { count } } }',
    '{ strict(case: "fine") { alias: leaf { t: text, c: count } maybeLeaf { ...on Leaf { text } } } }',
    "{ broken { leaf { text } maybeLeaf { text } } }",
]


def run(document: str, context: type[StrawberryGraphQLCoreExecutionContext]) -> ExecutionResult:
    return strawberry.Schema(query=Query, execution_context_class=context).execute_sync(document)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_same_answer_as_graphql_core(document: str) -> None:
    lean, full = (
        run(document, LeanExecutionContext.for_schema()),
        run(document, StrawberryGraphQLCoreExecutionContext),
    )
    assert lean.data == full.data
    assert [(e.message, e.path, e.locations) for e in lean.errors or []] == [
        (e.message, e.path, e.locations) for e in full.errors or []
    ]


def test_the_short_path_takes_plain_fields_only() -> None:
    types = strawberry.Schema(query=Query)._schema.type_map
    leaf, holder_type = types["Leaf"], types["Holder"]
    assert isinstance(leaf, GraphQLObjectType) and isinstance(holder_type, GraphQLObjectType)
    assert all(PlainField.of(field) is not None for field in leaf.fields.values())
    plain = {name for name, field in holder_type.fields.items() if PlainField.of(field) is not None}
    assert plain == {"leaf", "maybeLeaf"}  # not the list, not the field with a resolver
