"""Requests for any mutation of a schema, built from its types: nothing here names a mutation.

Arguments are generated from the input types: a field takes the value the caller's table has for its name,
else one for its scalar; an optional field is sent only when the table names it. The selection asks for every
member of the payload union with its fields a few levels deep, so building each answer is exercised too.
"""

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    get_named_type,
    is_leaf_type,
    is_required_argument,
)

# How deep the selection goes below each union member (the Transaction of a declined payment, a plan's money).
SELECTION_DEPTH = 3

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Leaf:
    """One scalar value sent: where it is in the variables, the field it fills, and its scalar type."""

    path: Path
    name: str
    scalar: str


@dataclass
class MutationRequest:
    name: str
    document: str
    variables: dict[str, Any]
    leaves: list[Leaf] = field(default_factory=list)

    def value_at(self, leaf: Leaf) -> object:
        value: Any = self.variables
        for step in leaf.path:
            value = value[step]
        return value

    def with_value(self, leaf: Leaf, value: object) -> dict[str, Any]:
        """The variables with one value replaced."""
        variables = copy.deepcopy(self.variables)
        target: Any = variables
        for step in leaf.path[:-1]:
            target = target[step]
        target[leaf.path[-1]] = value
        return variables


def mutations(schema: GraphQLSchema) -> dict[str, GraphQLField]:
    assert schema.mutation_type is not None
    return dict(schema.mutation_type.fields)


def payload_union(schema: GraphQLSchema, mutation: str) -> GraphQLUnionType:
    union = get_named_type(mutations(schema)[mutation].type)
    assert isinstance(union, GraphQLUnionType), f"{mutation} does not answer a union"
    return union


def members(schema: GraphQLSchema, mutation: str) -> frozenset[str]:
    return frozenset(member.name for member in payload_union(schema, mutation).types)


def error_members(schema: GraphQLSchema, mutation: str) -> frozenset[str]:
    """The union's members that implement `Error`: everything but the success type."""
    return frozenset(
        member.name
        for member in payload_union(schema, mutation).types
        if any(interface.name == "Error" for interface in member.interfaces)
    )


def members_with_field(schema: GraphQLSchema, mutation: str, field_name: str) -> frozenset[str]:
    return frozenset(
        member.name for member in payload_union(schema, mutation).types if field_name in member.fields
    )


def build_request(schema: GraphQLSchema, mutation: str, values: Mapping[str, object]) -> MutationRequest:
    """`mutation` with arguments made from `values`: by field or argument name first, then by scalar name."""
    field_ = mutations(schema)[mutation]
    request = MutationRequest(mutation, "", {})
    definitions, arguments = [], []
    for name, argument in field_.args.items():
        if not _sent(name, argument.type, values):
            continue
        request.variables[name] = _value((name,), name, argument.type, values, request.leaves)
        definitions.append(f"${name}: {argument.type}")
        arguments.append(f"{name}: ${name}")
    header = f"mutation Walk({', '.join(definitions)})" if definitions else "mutation Walk"
    call = f"{mutation}({', '.join(arguments)})" if arguments else mutation
    request.document = f"{header} {{ {call} {selection(field_.type, SELECTION_DEPTH)} }}"
    return request


def _sent(name: str, type_: GraphQLInputType, values: Mapping[str, object]) -> bool:
    return isinstance(type_, GraphQLNonNull) or name in values


def _value(
    path: Path, name: str, type_: GraphQLInputType, values: Mapping[str, object], leaves: list[Leaf]
) -> object:
    inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    if isinstance(inner, GraphQLList):
        return [_value((*path, 0), name, inner.of_type, values, leaves)]
    if isinstance(inner, GraphQLInputObjectType):
        return {
            field_name: _value((*path, field_name), field_name, input_field.type, values, leaves)
            for field_name, input_field in inner.fields.items()
            if _sent(field_name, input_field.type, values)
        }
    if isinstance(inner, GraphQLEnumType):
        return next(iter(inner.values))
    assert isinstance(inner, GraphQLScalarType)
    leaves.append(Leaf(path, name, inner.name))
    if name in values:
        return values[name]
    assert inner.name in values, f"no value for {name}: {inner.name}; add one to the table"
    return values[inner.name]


def selection(type_: GraphQLOutputType, depth: int) -> str:
    named = get_named_type(type_)
    if isinstance(named, GraphQLUnionType):
        members = " ".join(f"... on {member.name} {selection(member, depth)}" for member in named.types)
        return f"{{ __typename {members} }}"
    if isinstance(named, GraphQLInterfaceType):
        return "{ __typename }"
    assert isinstance(named, GraphQLObjectType)
    parts = ["__typename"]
    for name, child in named.fields.items():
        if any(is_required_argument(argument) for argument in child.args.values()):
            continue
        if is_leaf_type(get_named_type(child.type)):
            parts.append(name)
        elif depth > 0:
            parts.append(f"{name} {selection(child.type, depth - 1)}")
    return f"{{ {' '.join(parts)} }}"
