"""root/variables.py coerces variables as graphql-core does: the same values for every valid input, and for every
invalid one graphql-core's own errors (it hands those inputs back to graphql-core). Compared on generated
inputs, shaped by the types so that most are valid or nearly so, over nested input objects, lists of lists,
defaults, enums, a scalar that refuses values, a OneOf and a self-referencing input type."""

from datetime import UTC, datetime
from typing import Any
from unittest.mock import patch

import graphql
import hypothesis
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    build_schema,
    parse,
)
from graphql.execution import values as graphql_values
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.operations import RECORD_USAGE
from root import variables
from root.schema import build_schema as build_billing_schema

SDL = """
scalar Odd
enum Colour { RED GREEN }
input Point { x: Int!, y: Int = 3, label: String, colour: Colour = RED }
input Shape { points: [Point!]!, grid: [[Int]], name: String! = "shape", odd: Odd, tags: [String!] }
input Tree { value: Int, children: [Tree!] }
input Either @oneOf { a: Int, b: String }
type Query { f(id: ID, ratio: Float): Int }
"""


def definitions_of(document: str) -> tuple[graphql.VariableDefinitionNode, ...]:
    (operation,) = parse(document).definitions
    assert isinstance(operation, graphql.OperationDefinitionNode)
    return operation.variable_definitions or ()


DEFINITIONS = definitions_of(
    "query($shape: Shape, $shapes: [Shape!]!, $tree: Tree, $either: Either, $numbers: [Int] = [1],"
    " $odd: Odd!, $id: ID, $ratio: Float, $flag: Boolean, $colour: Colour) { f }"
)


def _odd(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value % 2 == 0:
        raise ValueError("not odd")
    return value


SCHEMA = build_schema(SDL)
ODD = SCHEMA.type_map["Odd"]
assert isinstance(ODD, GraphQLScalarType)
ODD.coerce_input_value = _odd

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


def values_of(type_: GraphQLInputType, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of the type's shape, often with a wrong one among them (null, a stray value, a missing field)."""
    stray = JSON if depth < 3 else JSON_LEAVES
    if isinstance(type_, GraphQLNonNull):
        return values_of(type_.of_type, depth) | st.none()
    if isinstance(type_, GraphQLList):
        items = values_of(type_.of_type, depth + 1)
        return st.lists(items, max_size=3) | items | st.none()
    if isinstance(type_, GraphQLEnumType):
        return st.sampled_from([*type_.values, "BLUE", 1]) | st.none()
    if isinstance(type_, GraphQLInputObjectType):
        if depth > 3:
            return st.none() | st.just({})
        fields = {name: values_of(field.type, depth + 1) for name, field in type_.fields.items()}
        shaped = st.fixed_dictionaries({}, optional=fields)
        return shaped | st.builds(
            lambda d, extra: d | extra, shaped, st.dictionaries(st.just("stray"), stray, max_size=1)
        )
    return stray


SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "Int": st.integers(-(2**31), 2**31 - 1),
    "Float": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**40), 2**40),
    "String": st.text(max_size=5),
    "ID": st.text(max_size=5) | st.integers(-(2**40), 2**40),
    "Boolean": st.booleans(),
    "Odd": st.integers(-1000, 1000).map(lambda n: 2 * n + 1),
}


def valid_of(type_: GraphQLInputType, depth: int = 0) -> st.SearchStrategy[Any]:
    """Only values the type accepts: nulls where it is nullable, a single value for a list, fields left out."""
    if not isinstance(type_, GraphQLNonNull):
        return st.none() | valid_of(GraphQLNonNull(type_), depth)
    named = type_.of_type
    if isinstance(named, GraphQLList):
        items = valid_of(named.of_type, depth + 1)
        return st.lists(items, max_size=3) | items
    if isinstance(named, GraphQLEnumType):
        return st.sampled_from(list(named.values))
    if isinstance(named, GraphQLInputObjectType):
        fields = {name: valid_of(field.type, depth + 1) for name, field in named.fields.items()}
        required = {name for name, field in named.fields.items() if graphql.is_required_input_field(field)}
        return st.fixed_dictionaries(
            {name: fields[name] for name in required},
            optional={name: fields[name] for name in fields.keys() - required},
        )
    return SCALARS[named.name]


def declared(definition: graphql.VariableDefinitionNode) -> GraphQLInputType:
    type_ = graphql.type_from_ast(SCHEMA, definition.type)
    assert graphql.is_input_type(type_)
    return type_


TYPES = {definition.variable.name.value: declared(definition) for definition in DEFINITIONS}
REQUIRED = {"odd", "shapes"}  # non-null, without a default
# Every variable but the OneOf and the self-referencing one, whose values graphql-core coerces.
VALID = st.fixed_dictionaries(
    {name: valid_of(TYPES[name]) for name in REQUIRED},
    optional={
        name: valid_of(type_) for name, type_ in TYPES.items() if name not in {*REQUIRED, "either", "tree"}
    },
)
# Valid variables, but for one: any value of its type's shape, often a wrong one.
ONE_ODD = st.builds(
    lambda valid, odd: valid | dict([odd]),
    VALID,
    st.sampled_from(sorted(TYPES)).flatmap(lambda name: st.tuples(st.just(name), values_of(TYPES[name]))),
)


def answer(result: graphql_values.VariableValuesOrErrors) -> object:
    if isinstance(result, list):
        return [error.message for error in result]
    sources = {name: (str(source.signature.type), source.value) for name, source in result.sources.items()}
    return result.coerced, sources


class FellBack(Exception):
    pass


def compiled_only(
    schema: graphql.GraphQLSchema,
    definitions: tuple[graphql.VariableDefinitionNode, ...],
    inputs: dict[str, Any],
) -> graphql_values.VariableValuesOrErrors:
    """root/variables.py's answer, raising FellBack where it would hand the inputs to graphql-core."""

    def fall_back(*_: object, **__: object) -> None:
        raise FellBack

    with patch.object(graphql_values, "get_variable_values", fall_back):
        return variables.get_variable_values(schema, definitions, inputs, max_errors=50)


def both(
    schema: graphql.GraphQLSchema,
    definitions: tuple[graphql.VariableDefinitionNode, ...],
    inputs: dict[str, Any],
) -> tuple[object, object]:
    """(root/variables.py's answer, graphql-core's), noting which path gave the first."""
    try:
        ours, path = answer(compiled_only(schema, definitions, inputs)), "compiled"
    except FellBack:
        ours = answer(variables.get_variable_values(schema, definitions, inputs, max_errors=50))
        path = "handed to graphql-core"
    if hypothesis.currently_in_test_context():
        hypothesis.event(path)  # --hypothesis-show-statistics shows the share of each
    return ours, answer(graphql_values.get_variable_values(schema, definitions, inputs, max_errors=50))


@settings(max_examples=1_000, deadline=None)
@given(ONE_ODD)
def test_the_same_answer_as_graphql_core(inputs: dict[str, Any]) -> None:
    ours, theirs = both(SCHEMA, DEFINITIONS, inputs)
    assert ours == theirs


@settings(max_examples=300, deadline=None)
@given(VALID)
def test_valid_inputs_are_coerced_here_as_graphql_core_coerces_them(inputs: dict[str, Any]) -> None:
    result = compiled_only(SCHEMA, DEFINITIONS, inputs)
    assert answer(result) == answer(graphql_values.get_variable_values(SCHEMA, DEFINITIONS, inputs))


def test_valid_inputs_take_the_compiled_path() -> None:
    """Not only the fallback: a valid input is coerced here, defaults and enums included."""
    inputs = {
        "shapes": [
            {"points": [{"x": 1}, {"x": 2, "y": None, "colour": "GREEN"}], "grid": [[1, None], 3], "odd": 5}
        ],
        "odd": 7,
        "numbers": 4,
    }
    result = compiled_only(SCHEMA, DEFINITIONS, inputs)
    assert isinstance(result, graphql_values.VariableValues)
    assert result.coerced["shapes"] == [
        {
            "points": [
                {"x": 1, "y": 3, "colour": "RED"},
                {
                    "x": 2,
                    "y": None,
                    "colour": "GREEN",
                },
            ],
            "grid": [[1, None], [3]],
            "name": "shape",
            "odd": 5,
        }
    ]
    assert result.coerced["numbers"] == [4]
    assert answer(result) == answer(graphql_values.get_variable_values(SCHEMA, DEFINITIONS, inputs))


@pytest.mark.parametrize(
    "inputs",
    [
        {"odd": 2},  # the scalar refuses it
        {"odd": 1, "shapes": [{"points": [{"x": 1, "z": 2}]}]},  # an unknown field
        {"odd": 1, "shapes": [{"points": [None]}]},  # null in a list of non-null items
        {"odd": 1, "shapes": [], "either": {"a": 1, "b": "x"}},  # OneOf: graphql-core's own path
        {"shapes": []},  # a non-null variable left out
    ],
)
def test_invalid_inputs_get_graphql_cores_errors(inputs: dict[str, Any]) -> None:
    ours, theirs = both(SCHEMA, DEFINITIONS, inputs)
    assert isinstance(ours, list) and ours and ours == theirs


def test_a_self_referencing_type_nested_too_deeply_is_refused_as_graphql_core_refuses_it() -> None:
    tree: dict[str, Any] = {"value": 1}
    for _ in range(300):
        tree = {"children": [tree]}
    ours, theirs = both(SCHEMA, DEFINITIONS, {"odd": 1, "shapes": [], "tree": tree})
    assert ours == theirs == ["Variable values are nested too deeply."]


def test_record_usage_batches_are_coerced_alike() -> None:
    schema = build_billing_schema()._schema
    definitions = definitions_of(RECORD_USAGE)
    event = {
        "externalId": "e-1",
        "accountId": "QWNjb3VudDox",
        "occurredAt": datetime(2026, 11, 30, tzinfo=UTC).isoformat(),
        "category": "call",
        "cost": "0.45",
        "durationSeconds": 90,
        "inputTokens": "900",
    }
    for batch in (
        [event] * 3,
        [event, {**event, "durationSeconds": "long"}],
        [event, {**event, "occurredAt": 5}],
    ):
        ours, theirs = both(schema, definitions, {"events": batch})
        assert ours == theirs


def test_every_execution_coerces_here_once_a_schema_is_built() -> None:
    build_billing_schema()
    assert graphql.execution.executor.get_variable_values is variables.get_variable_values  # type: ignore[attr-defined]
