"""root/execution.py's short paths answer exactly as graphql-core's and Strawberry's full paths: same data, same
errors at the same paths, and null propagation from a failing non-null field."""

import json
from collections.abc import Mapping
from enum import Enum
from typing import Annotated, Any

import pytest
import strawberry
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import FragmentDefinitionNode, GraphQLObjectType, OperationDefinitionNode, execute, parse
from strawberry.types.arguments import InputContext
from strawberry.types.base import get_object_definition
from strawberry.types.execution import ExecutionResult

from root.execution import LeanExecutionContext, PlainField, call_resolvers_directly, unconditional


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

    @strawberry.field
    def named(self, info: strawberry.Info) -> str:
        return f"{info.field_name} of {self.leaf.text}"

    @strawberry.field
    def rooted(root: "Holder") -> int:  # Strawberry passes the source as `root`
        return root.leaf.count + 1

    @strawberry.field
    def failing(self) -> str | None:
        raise ValueError("no")

    @strawberry.field
    def greeting(self, to_whom: str = "you", times: int | None = None) -> str:
        return f"{self.leaf.text} greets {to_whom} {times}"

    @strawberry.field
    def painted(self, colour: Colour) -> str:  # an enum argument: Strawberry converts it
        return colour.value

    @strawberry.field
    def by_id(self, id: strawberry.ID) -> str:
        return str(id)


@strawberry.interface
class Titled:
    title: str


@strawberry.type
class Book(Titled):  # implementing an interface: Strawberry gives it an is_type_of
    pages: int


@strawberry.type
class Shelf:
    book: Book
    maybe_book: Book | None


# A right book, and values that are not books (graphql-core's error for each, null propagated).
SHELVES: list[Shelf | None] = [
    Shelf(book=Book(title="t", pages=3), maybe_book=None),
    Shelf(book=Book(title="u", pages=4), maybe_book=Leaf(text="x", maybe=None, count=1, colour=Colour.RED)),  # type: ignore[arg-type]
    Shelf(book="not a book", maybe_book=Book(title="v", pages=5)),  # type: ignore[arg-type]
]


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
    def shelves(self) -> list[Shelf | None]:
        return SHELVES

    @strawberry.field
    def broken(self) -> Holder | None:
        return Holder(leaf=object(), maybe_leaf=None, leaves=[])  # type: ignore[arg-type]


DOCUMENTS = [
    '{ holders { computed named rooted failing greeting g2: greeting(toWhom: "me", times: 2) painted(colour: RED) byId(id: "7") leaf { text maybe count colour } maybeLeaf { text count } leaves { text colour } } }',
    "{ holders { maybeLeaf { maybe colour } } }",
    '{ strict(case: "null in non-null") { leaf { text } } }',
    '{ strict(case: "refused by Int") { maybeLeaf { count } } }',
    '{ strict(case: "fine") { alias: leaf { t: text, c: count } maybeLeaf { ...on Leaf { text } } } }',
    "{ broken { leaf { text } maybeLeaf { text } } }",
    "{ shelves { book { title pages } maybeBook { title ... on Book { pages } } } }",
]


def run(document: str, *, lean: bool) -> ExecutionResult:
    if not lean:
        return strawberry.Schema(query=Query).execute_sync(document)
    schema = strawberry.Schema(query=Query, execution_context_class=LeanExecutionContext.for_schema())
    call_resolvers_directly(schema)
    return schema.execute_sync(document)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_same_answer_as_graphql_core(document: str) -> None:
    lean, full = run(document, lean=True), run(document, lean=False)
    assert json.dumps(lean.data) == json.dumps(full.data)  # the same keys in the same order
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
    shelf = types["Shelf"]
    assert isinstance(shelf, GraphQLObjectType)
    assert all(PlainField.of(field) is not None for field in shelf.fields.values())  # Strawberry's is_type_of


def test_resolvers_with_plain_arguments_are_called_directly() -> None:
    schema = strawberry.Schema(query=Query)
    fields = {
        (named.name, name): field
        for named in schema._schema.type_map.values()
        if isinstance(named, GraphQLObjectType) and named.name in {"Query", "Holder"}
        for name, field in named.fields.items()
    }
    before = {key: field.resolve for key, field in fields.items()}
    call_resolvers_directly(schema)
    replaced = {key for key, field in fields.items() if field.resolve is not before[key]}
    # Not those whose arguments Strawberry converts (an enum, an ID) nor the fields without a resolver.
    assert replaced == {
        ("Holder", name) for name in ("computed", "named", "rooted", "failing", "greeting")
    } | {
        ("Query", "holders"),
        ("Query", "shelves"),
        ("Query", "broken"),
        ("Query", "strict"),
    }


@strawberry.type
class Pending:
    """Fields without resolvers that hold awaitables: graphql-core awaits them."""

    leaf: Leaf
    text: str


async def later(value: Any) -> Any:
    return value


@strawberry.type
class PendingQuery:
    @strawberry.field
    def pending(self) -> Pending:
        return Pending(leaf=later(CASES["fine"].leaf), text=later("done"))  # type: ignore[arg-type]


async def test_fields_holding_awaitables_are_awaited_as_graphql_core_does() -> None:
    document = "{ pending { text leaf { text count } } }"
    lean = strawberry.Schema(query=PendingQuery, execution_context_class=LeanExecutionContext.for_schema())
    full = strawberry.Schema(query=PendingQuery)
    lean_result, full_result = await lean.execute(document), await full.execute(document)
    assert full_result.errors is None
    assert (lean_result.data, lean_result.errors) == (full_result.data, None)


@strawberry.input
class Pair:
    left: int
    right: int | None = None


def _pair(cls: type[Pair], value: Mapping[str, Any], context: InputContext) -> tuple[int, int | None]:
    """Builds a tuple itself, and refuses a negative left naming where it is, as recordUsage's events do."""
    if value["left"] < 0:
        raise ValueError(f"negative at {context.path}")
    return value["left"], value.get("right")


get_object_definition(Pair, strict=True).from_input = _pair


@strawberry.type
class PairQuery:
    @strawberry.field
    async def sums(
        self, pairs: Annotated[list[tuple[int, int | None]], strawberry.argument(graphql_type=list[Pair])]
    ) -> list[int]:
        return [left + (right or 0) for left, right in pairs]

    @strawberry.field
    async def one(
        self,
        info: strawberry.Info,
        pair: Annotated[tuple[int, int | None] | None, strawberry.argument(graphql_type=Pair | None)] = None,
    ) -> str:
        return f"{info.field_name}: {pair}"


PAIR_DOCUMENTS = [
    ("query($p: [Pair!]!) { sums(pairs: $p) }", {"p": [{"left": 1, "right": 2}, {"left": 3}]}),
    ("query($p: [Pair!]!) { sums(pairs: $p) }", {"p": [{"left": 1}, {"left": -3}]}),
    ("query($p: [Pair!]!) { sums(pairs: $p) }", {"p": {"left": 5}}),
    ("{ one(pair: {left: 4, right: 1}) a: one b: one(pair: null) }", None),
]


@pytest.mark.parametrize(("document", "variables"), PAIR_DOCUMENTS)
async def test_async_resolvers_with_inputs_that_build_themselves_answer_alike(
    document: str, variables: dict[str, Any] | None
) -> None:
    lean = strawberry.Schema(query=PairQuery, execution_context_class=LeanExecutionContext.for_schema())
    call_resolvers_directly(lean)
    query_type = lean._schema.query_type
    assert query_type is not None
    assert all(field.resolve.__qualname__.startswith("_direct_call") for field in query_type.fields.values())
    full = strawberry.Schema(query=PairQuery)
    ours = await lean.execute(document, variable_values=variables)
    theirs = await full.execute(document, variable_values=variables)
    assert ours.data == theirs.data
    assert [(e.message, e.path) for e in ours.errors or []] == [
        (e.message, e.path) for e in theirs.errors or []
    ]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            '{ strict(case: "fine") { leaf { text } ...F ... on Holder { maybeLeaf { count } } } } '
            "fragment F on Holder { leaves { text } }",
            True,
        ),
        ('query ($x: Boolean!) { strict(case: "fine") { leaf @include(if: $x) { text } } }', False),
        ('query ($x: Boolean!) { strict(case: "fine") { ... on Holder @skip(if: $x) { computed } } }', False),
        (
            'query ($x: Boolean!) { strict(case: "fine") { ...F @include(if: $x) } } fragment F on Holder { computed }',
            False,
        ),
        ('{ strict(case: "fine") { ...F } } fragment F on Holder { leaf { text @skip(if: true) } }', False),
    ],
)
def test_an_operation_is_unconditional_without_directives_on_its_selections(
    document: str, expected: bool
) -> None:
    parsed = parse(document)
    operation = next(node for node in parsed.definitions if isinstance(node, OperationDefinitionNode))
    fragments = {
        node.name.value: node for node in parsed.definitions if isinstance(node, FragmentDefinitionNode)
    }
    assert unconditional(operation, fragments) is expected


def test_the_fields_an_unconditional_operation_collects_are_remembered_across_runs() -> None:
    context_class = LeanExecutionContext.for_schema()
    schema = strawberry.Schema(query=Query, execution_context_class=context_class)
    document = parse(
        '{ strict(case: "fine") { leaf { text } ...F } } fragment F on Holder { maybeLeaf { count } }'
    )
    first = execute(schema._schema, document, executor_class=context_class)
    remembered = context_class.operations.get(id(document.definitions[0]))
    assert remembered is not None and remembered.fields  # Holder's fields, Leaf's under leaf and maybeLeaf
    collected = dict(remembered.fields)
    second = execute(schema._schema, document, executor_class=context_class)
    assert second == first == execute(strawberry.Schema(query=Query)._schema, document)
    assert remembered.fields == collected  # nothing collected again


def test_the_fields_a_conditional_operation_collects_follow_its_variables() -> None:
    context_class = LeanExecutionContext.for_schema()
    schema = strawberry.Schema(query=Query, execution_context_class=context_class)
    document = parse(
        'query ($x: Boolean!) { strict(case: "fine") { leaf { text } maybeLeaf @include(if: $x) { count } } }'
    )
    shown = execute(schema._schema, document, variable_values={"x": True}, executor_class=context_class)
    hidden = execute(schema._schema, document, variable_values={"x": False}, executor_class=context_class)
    assert isinstance(shown, GraphQLExecutionResult) and isinstance(hidden, GraphQLExecutionResult)
    assert shown.data == {"strict": {"leaf": {"text": "a"}, "maybeLeaf": {"count": 1}}}
    assert hidden.data == {"strict": {"leaf": {"text": "a"}}}
    remembered = context_class.operations.get(id(document.definitions[0]))
    assert remembered is not None and remembered.fields is None  # collected afresh on each run
