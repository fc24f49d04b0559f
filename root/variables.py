"""Variable coercion compiled per input type, for the variables of a valid request.

graphql-core coerces a variable's value by walking its type for every value (`coerce_input_value`: non-null,
list, input object, leaf), after a first walk that only checks the value is not nested too deeply. For
recordUsage's 1,000 events of 9 fields that was about 10 ms of a batch's CPU (3 ms here), most of it deciding
again and again what the type is. Here each input type becomes a few closures once, so a value's coercion is
the checks themselves: the same scalars' `coerce_input_value`, the same defaults, `out_name`s and `out_type`s.

Only success takes this path. A value it refuses (and a required variable left out, an invalid default, a
OneOf or self-referencing input type) sends all the variables to graphql-core's `get_variable_values`, which
coerces them again and words the errors as it always has; tests/gateway/test_variable_coercion.py compares the
two on generated inputs. The depth walk is not needed: the value is followed only as deep as the type's
wrappers and fields go, and a type that does not refer to itself is far shallower than the parser's nesting
limit.
"""

from collections.abc import Callable, Collection
from typing import Any
from weakref import WeakKeyDictionary

from graphql import (
    GraphQLError,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    Undefined,
    VariableDefinitionNode,
    is_required_input_field,
)
from graphql.execution import executor as graphql_executor
from graphql.execution import values as graphql_values
from graphql.execution.get_variable_signature import GraphQLVariableSignature, get_variable_signature
from graphql.pyutils import is_iterable
from graphql.utilities.coerce_input_value import coerce_default_value

# Coerces a value other than null: returns the coerced value, or Undefined (or raises) when it is not valid.
Step = Callable[[Any], Any]
# Whether the type is non-null, and the step for its values. Null is handled where the value is met.
Compiled = tuple[bool, Step]

_COMPILED: "WeakKeyDictionary[GraphQLInputObjectType, Step | None]" = WeakKeyDictionary()


class _SelfReferencing(Exception):
    """An input type that contains itself: its values may nest as deep as a client likes."""


def install() -> None:
    """Make every execution coerce its variables here. graphql-core's `Executor.build` looks up
    `get_variable_values` in its module and takes no parameter for another; the answers are the same."""
    graphql_executor.get_variable_values = get_variable_values  # type: ignore[attr-defined]


def get_variable_values(
    schema: GraphQLSchema,
    var_def_nodes: Collection[VariableDefinitionNode],
    inputs: dict[str, Any],
    max_errors: int | None = None,
    hide_suggestions: bool = False,
) -> graphql_values.VariableValuesOrErrors:
    """graphql-core's `get_variable_values`, with the same answer for every input."""
    compiled = _coerced_here(schema, var_def_nodes, inputs, hide_suggestions)
    return compiled or graphql_values.get_variable_values(
        schema, var_def_nodes, inputs, max_errors, hide_suggestions
    )


def _coerced_here(
    schema: GraphQLSchema,
    var_def_nodes: Collection[VariableDefinitionNode],
    inputs: dict[str, Any],
    hide_suggestions: bool,
) -> graphql_values.VariableValues | None:
    """The variables' values, or None to leave them all to graphql-core."""
    sources: dict[str, graphql_values.VariableValueSource] = {}
    coerced: dict[str, Any] = {}
    for node in var_def_nodes:
        signature = get_variable_signature(schema, node)
        if isinstance(signature, GraphQLError):
            return None
        value = inputs.get(signature.name, Undefined)
        if value is Undefined and (
            node.default_value is not None or not isinstance(signature.type, GraphQLNonNull)
        ):
            # Left out: its default (coerced once, and kept, by graphql-core), else omitted.
            sources[signature.name] = graphql_values.VariableValueSource(signature)
            if node.default_value is None or _default_used(coerced, signature, hide_suggestions):
                continue
        compiled = None if value is Undefined else _compiled(signature.type)
        result = Undefined if compiled is None else _coerce(value, *compiled)
        if result is Undefined:
            return None
        sources[signature.name] = graphql_values.VariableValueSource(signature, value)
        coerced[signature.name] = result
    return graphql_values.VariableValues(sources, coerced)


def _default_used(
    coerced: dict[str, Any], signature: GraphQLVariableSignature, hide_suggestions: bool
) -> bool:
    """Puts the variable's default in `coerced` as graphql-core does; False when it is invalid (left to
    graphql-core, which words the error)."""
    refused: list[GraphQLError] = []
    graphql_values.maybe_use_default_value(
        coerced, signature.name, signature, lambda error, _: refused.append(error), hide_suggestions
    )
    return not refused


def _compiled(type_: GraphQLInputType) -> Compiled | None:
    """The compiled coercion of `type_`, or None when graphql-core must coerce it (see the module's doc)."""
    try:
        return _compile(type_, frozenset())
    except _SelfReferencing:
        return None


def _coerce(value: Any, non_null: bool, step: Step) -> Any:
    if value is None or value is Undefined:
        return Undefined if non_null else None
    try:
        return step(value)
    except Exception:
        return Undefined


def _compile(type_: GraphQLInputType, enclosing: frozenset[str]) -> Compiled | None:
    non_null = isinstance(type_, GraphQLNonNull)
    named = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    if isinstance(named, GraphQLList):
        item = _compile(named.of_type, enclosing)
        return None if item is None else (non_null, _list(*item))
    if not isinstance(named, GraphQLInputObjectType):
        return non_null, named.coerce_input_value
    # Whether a type refers to itself does not depend on where it is met, so its compilation is kept.
    if named not in _COMPILED:
        _COMPILED[named] = _input_object(named, enclosing)
    step = _COMPILED[named]
    return None if step is None else (non_null, step)


def _input_object(type_: GraphQLInputObjectType, enclosing: frozenset[str]) -> Step | None:
    if type_.name in enclosing:
        raise _SelfReferencing
    if type_.is_one_of:
        return None
    fields = []
    for name, field in type_.fields.items():
        compiled = _compile(field.type, enclosing | {type_.name})
        if compiled is None:
            return None
        optional = None if is_required_input_field(field) else field
        fields.append((name, field.out_name or name, *compiled, optional))
    return _object(frozenset(type_.fields), tuple(fields), type_.out_type)


def _list(non_null_items: bool, item: Step) -> Step:
    def coerce(value: Any) -> Any:
        items: list[Any] = []
        for each in value if is_iterable(value) else (value,):  # a single value is a list of one
            if each is None or each is Undefined:
                if non_null_items:
                    return Undefined
                items.append(None)
                continue
            coerced = item(each)
            if coerced is Undefined:
                return Undefined
            items.append(coerced)
        return items

    return coerce


def _object(
    names: frozenset[str],
    fields: tuple[tuple[str, str, bool, Step, GraphQLInputField | None], ...],
    out_type: Callable[[dict[str, Any]], Any],
) -> Step:
    def coerce(value: Any) -> Any:
        if not isinstance(value, dict):
            return Undefined
        if not names.issuperset(value) and any(
            name not in names for name, given in value.items() if given is not Undefined
        ):
            return Undefined
        coerced: dict[str, Any] = {}
        for name, out_name, non_null, step, optional in fields:
            given = value.get(name, Undefined)
            if given is Undefined:
                if optional is None:
                    return Undefined
                default = coerce_default_value(optional)
                if default is not Undefined:
                    coerced[out_name] = default
            elif given is None:
                if non_null:
                    return Undefined
                coerced[out_name] = None
            else:
                given = step(given)
                if given is Undefined:
                    return Undefined
                coerced[out_name] = given
        return out_type(coerced)

    return coerce
