"""Execution with a short path for plain fields: an attribute read, then the scalar's coercion or the object's
sub-selection.

graphql-core executes every field the same way: a resolve info built, the resolver called through Strawberry's
wrapper, then `complete_value` walking the type (non-null, list, leaf, object). For a field with no resolver
of its own whose type is a scalar, an enum or an object type (an account's name, a balance's `available`), all
of that amounts to `getattr(source, name)` and the scalar's coercion or the object's fields; on the partner
dashboard such fields are most of the ~5,000 fields of a page of 100 accounts. This context answers them
directly and leaves every other field (resolvers, lists, interfaces and unions), and every value that would be
an error (a null in a non-null field, a value the scalar refuses), to graphql-core, so errors and their
locations stay exactly as they were.

The fields collected for an object (its selections merged across fragments) are remembered per operation across
requests when no selection is conditional: graphql-core collects them again on every request, a tenth of a
Billing page's execution.

`call_resolvers_directly` does the same for the resolvers whose arguments are plain scalars (an account's
balance, company, payment methods and usage) or input types that build their own value (recordUsage's events):
Strawberry's wrapper converts arguments, threads field extensions and handles exceptions for every call, none
of which such a resolver needs, and its generic conversion of a list re-examined the item type for each of
1,000 events.
"""

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLField,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    get_nullable_type,
    is_non_null_type,
)
from graphql.execution.collect_fields import CollectedFields, FieldDetailsList, GroupedFieldSet
from graphql.pyutils import Path, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.arguments import InputContext
from strawberry.types.base import (
    StrawberryList,
    StrawberryMaybe,
    StrawberryOptional,
    StrawberryType,
    get_object_definition,
)
from strawberry.types.field import StrawberryField

from billing.lru import LruCache

# Operations whose collected fields are remembered (each a few kB): as many as the checked documents.
REMEMBERED_OPERATIONS = 256
# An object type and the ids of the field nodes selecting it.
CollectionKey = tuple[GraphQLObjectType, tuple[int, ...]]


class PlainField:
    """How to answer a field with no resolver: the attribute to read, and what completes its value (a scalar's
    or enum's output coercion, or an object type with no `is_type_of` check or Strawberry's)."""

    __slots__ = ("attribute", "coerce", "nullable", "object_type", "type")

    def __init__(self, attribute: str, field_type: GraphQLOutputType) -> None:
        self.attribute = attribute
        self.type = field_type
        self.nullable = not is_non_null_type(field_type)
        named = get_nullable_type(field_type)
        self.coerce = (
            named.coerce_output_value if isinstance(named, GraphQLScalarType | GraphQLEnumType) else None
        )
        self.object_type = named if isinstance(named, GraphQLObjectType) else None

    @classmethod
    def of(cls, field: GraphQLField) -> "PlainField | None":
        """None when `field` needs graphql-core's full path: a resolver, field extensions, arguments, a custom
        default resolver, or a type this path does not complete (lists, interfaces, unions, type checks)."""
        definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        if not isinstance(definition, StrawberryField) or not definition.is_basic_field or field.args:
            return None
        if definition.default_resolver is not getattr or not getattr(field.resolve, "_is_default", False):
            return None
        plain = cls(definition.python_name, field.type)
        if plain.coerce is None and (plain.object_type is None or not _checked_here(plain.object_type)):
            return None
        return plain


def unconditional(operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode]) -> bool:
    """Whether the fields the operation selects never depend on its variables: no directive on any selection or
    fragment (@skip, @include, @defer, @stream) and no fragment arguments."""
    if any(fragment.directives or fragment.variable_definitions for fragment in fragments.values()):
        return False
    pending: list[SelectionSetNode] = [operation.selection_set]
    pending += [fragment.selection_set for fragment in fragments.values()]
    while pending:
        for selection in pending.pop().selections:
            if selection.directives or (isinstance(selection, FragmentSpreadNode) and selection.arguments):
                return False
            if isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set is not None:
                pending.append(selection.selection_set)
    return True


class _Collections:
    """One operation's collected fields, kept with the operation and its fragments so that the node ids in the
    keys stay theirs."""

    __slots__ = ("fields", "fragments", "operation")

    def __init__(
        self, operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode]
    ) -> None:
        self.operation = operation
        self.fragments = fragments
        self.fields: dict[CollectionKey, CollectedFields] | None = (
            {} if unconditional(operation, fragments) else None
        )


def _checked_here(object_type: GraphQLObjectType) -> bool:
    """Whether the object type's values can be checked here: it has no `is_type_of`, or the one Strawberry gives
    a type that implements an interface (Transaction, a Node), which never reads the resolve info (graphql-core
    builds one to call it)."""
    is_type_of = object_type.is_type_of
    return is_type_of is None or is_type_of.__qualname__.endswith("_get_is_type_of.<locals>.is_type_of")


def _is_type_of(object_type: GraphQLObjectType, value: Any) -> bool:
    """False sends the value to graphql-core, which checks it again and reports the error."""
    is_type_of = object_type.is_type_of
    try:
        return is_type_of is None or bool(is_type_of(value, None))  # type: ignore[arg-type]  # never read
    except Exception:
        return False


class LeanExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Make one subclass per schema with `for_schema`: it remembers, per type and field, how to answer it, and
    per operation the fields it collects."""

    plain_fields: ClassVar[dict[tuple[str, str], PlainField | None]]
    operations: ClassVar[LruCache[int, _Collections]]

    @classmethod
    def for_schema(cls) -> type["LeanExecutionContext"]:
        return type(
            "LeanExecutionContext",
            (cls,),
            {"plain_fields": {}, "operations": LruCache(REMEMBERED_OPERATIONS)},
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        remembered = self.operations.get(id(self.operation))
        if remembered is None or remembered.operation is not self.operation:
            remembered = _Collections(self.operation, self.fragment_definitions)
            self.operations.put(id(self.operation), remembered)
        self.collected = remembered.fields

    def collect_subfields(
        self, return_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> CollectedFields:
        """graphql-core's, remembered across runs of an operation by the ids of the field nodes (graphql-core
        remembers them for one run, by the identity of the list)."""
        if self.collected is None:
            return super().collect_subfields(return_type, field_details_list)
        this_run = self._relevant_sub_fields.get((return_type, id(field_details_list)))
        if this_run is not None:
            return this_run[1]
        key = (return_type, tuple(id(details.node) for details in field_details_list))
        collected = self.collected.get(key)
        if collected is None:
            collected = self.collected[key] = super().collect_subfields(return_type, field_details_list)
        else:
            self._relevant_sub_fields[(return_type, id(field_details_list))] = (field_details_list, collected)
        return collected

    def _plain(self, parent_type: GraphQLObjectType, name: str) -> PlainField | None:
        key = (parent_type.name, name)
        try:
            return self.plain_fields[key]
        except KeyError:
            field = parent_type.fields.get(name)
            plain = self.plain_fields[key] = None if field is None else PlainField.of(field)
            return plain

    def _value(self, plain: PlainField, source: Any) -> Any:
        """The attribute's value, or Undefined when reading it raised (graphql-core's path raises it again,
        located)."""
        try:
            return getattr(source, plain.attribute)
        except Exception:
            return Undefined

    def _leaf(self, plain: PlainField, value: Any) -> Any:
        """A scalar or enum field's answer, or Undefined when it is graphql-core's to give: an awaitable (a field
        may hold one), or a value that is an error (a null in a non-null field, one the scalar refuses)."""
        if value is None:
            return None if plain.nullable else Undefined
        if value is Undefined or self.is_awaitable(value):
            return Undefined
        try:
            coerced = plain.coerce(value)  # type: ignore[misc]  # set for a scalar or an enum
        except Exception:
            return Undefined
        return Undefined if coerced is None else coerced

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> Any:
        """graphql-core's, answering plain scalar and enum fields in the loop: graphql-core makes a Path and a
        call for each field, and only an error reads the Path."""
        if self.middleware_manager and self.middleware_manager.middlewares:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        results: dict[str, Any] = {}
        awaiting: list[str] = []
        is_awaitable = self.is_awaitable
        type_name = parent_type.name
        try:
            for response_name, field_details_list in grouped_field_set.items():
                plain = self._plain(parent_type, field_details_list[0].node.name.value)
                if plain is not None and plain.coerce is not None:
                    answer = self._leaf(plain, self._value(plain, source_value))
                    if answer is not Undefined:
                        results[response_name] = answer
                        continue
                result = self.execute_field(
                    parent_type,
                    source_value,
                    field_details_list,
                    Path(path, response_name, type_name),
                    position_context,
                )
                if result is not Undefined:
                    results[response_name] = result
                    if is_awaitable(result):
                        awaiting.append(response_name)
        except Exception:
            if awaiting:  # settled, as graphql-core settles them: they may fail too
                self.settle_in_background([results[name] for name in awaiting])
            raise
        return self._gathered(results, awaiting) if awaiting else results

    async def _gathered(self, results: dict[str, Any], awaiting: list[str]) -> dict[str, Any]:
        if len(awaiting) == 1:
            results[awaiting[0]] = await results[awaiting[0]]
        else:
            answers = await gather_with_cancel(*(results[name] for name in awaiting))
            results.update(zip(awaiting, answers, strict=True))
        return results

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        plain = self._plain(parent_type, field_details_list[0].node.name.value)
        if plain is None or (self.middleware_manager and self.middleware_manager.middlewares):
            return super().execute_field(parent_type, source, field_details_list, path, position_context)
        value = self._value(plain, source)
        if plain.object_type is None:
            answer = self._leaf(plain, value)
            if answer is not Undefined:
                return answer
        elif value is None and plain.nullable:
            return None
        elif (
            value is not None
            and value is not Undefined
            and not self.is_awaitable(value)
            and _is_type_of(plain.object_type, value)
        ):
            return self._sub_selection(plain, value, field_details_list, path, position_context)
        return super().execute_field(parent_type, source, field_details_list, path, position_context)

    def _sub_selection(
        self,
        plain: PlainField,
        value: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        """The object's fields, with a failure handled as graphql-core's `execute_field` handles it (null in
        a nullable field, propagated from a non-null one)."""
        assert plain.object_type is not None
        try:
            completed = self.collect_and_execute_subfields(
                plain.object_type, field_details_list, path, value, position_context
            )
        except Exception as error:
            self.handle_field_error(error, plain.type, field_details_list, path)
            return None
        if self.is_awaitable(completed):
            return self._awaited(completed, plain, field_details_list, path)
        return completed

    async def _awaited(
        self, completed: Awaitable[Any], plain: PlainField, field_details_list: FieldDetailsList, path: Path
    ) -> Any:
        try:
            return await completed
        except Exception as error:
            self.handle_field_error(error, plain.type, field_details_list, path)
            return None


# Converts one argument's value as Strawberry's `convert_argument` would, given the resolver's Info.
Convert = Callable[[Any, strawberry.Info[Any, Any] | None], Any]


def _direct_call(
    definition: StrawberryField,
    info_class: type[strawberry.Info[Any, Any]],
    arguments: dict[str, tuple[str, Convert | None]],
) -> Callable[..., Any]:
    """The resolver of `definition` called as Strawberry calls it (the source as `self`, `root` or `parent`, its
    Info, and its arguments under their Python names, converted where Strawberry converts them), without
    Strawberry's per-call wrapper. An async resolver's coroutine is graphql-core's to await, as Strawberry's
    wrapper's is."""
    resolver = definition.base_resolver
    assert resolver is not None
    function: Callable[..., Any] = resolver.wrapped_func  # type: ignore[assignment]  # a function here
    as_self = resolver.self_parameter is not None
    source_names = [p.name for p in (resolver.parent_parameter, resolver.root_parameter) if p is not None]
    info_name = None if resolver.info_parameter is None else resolver.info_parameter.name
    converting = any(convert is not None for _, convert in arguments.values())

    def resolve(source: Any, info: GraphQLResolveInfo[Any], **given: Any) -> Any:
        made = info_class(_raw_info=info, _field=definition) if info_name is not None or converting else None
        values = {}
        for name, value in given.items():
            python, convert = arguments[name]
            values[python] = value if convert is None else convert(value, made)
        values.update(dict.fromkeys(source_names, source))
        if info_name is not None:
            values[info_name] = made
        return function(source, **values) if as_self else function(**values)

    return resolve


def _arguments(
    field: GraphQLField, definition: StrawberryField, schema: strawberry.Schema
) -> dict[str, tuple[str, Convert | None]] | None:
    """{GraphQL name: (Python name, conversion)} of the field's arguments, when each is one Strawberry passes as
    graphql-core parsed it (a scalar, optional or not; not an ID, an enum or a Maybe) or one an input type
    builds itself (`_built_by_input`); else None."""
    arguments: dict[str, tuple[str, Convert | None]] = {}
    for argument in definition.arguments:
        name = schema.config.name_converter.from_argument(argument)
        if name not in field.args or isinstance(argument.type, StrawberryMaybe):
            return None
        parsed = get_nullable_type(field.args[name].type)
        # ID covers Strawberry's GlobalID, which it decodes.
        if isinstance(parsed, GraphQLScalarType) and parsed.name != "ID":
            arguments[name] = (argument.python_name, None)
        elif (convert := _built_by_input(argument.type, name, schema)) is not None:
            arguments[name] = (argument.python_name, convert)
        else:
            return None
    return arguments if len(arguments) == len(field.args) else None


def _built_by_input(
    argument_type: StrawberryType | type, name: str, schema: strawberry.Schema
) -> Convert | None:
    """The conversion of an argument that is an input type with its own `from_input`, or a list of one: each
    value goes to `from_input` with the context (and path) Strawberry's `convert_argument` gives it."""
    inner = argument_type.of_type if isinstance(argument_type, StrawberryOptional) else argument_type
    listed = isinstance(inner, StrawberryList)
    item = inner.of_type if isinstance(inner, StrawberryList) else inner
    if not isinstance(item, type):  # e.g. a list of optional items, or a lazy type
        return None
    definition = get_object_definition(item)
    if definition is None or not definition.is_input or definition.from_input is None:
        return None
    from_input, config = definition.from_input, schema.config
    scalars = schema.schema_converter.scalar_registry

    def convert(value: Any, info: strawberry.Info[Any, Any] | None) -> Any:
        if value is None:
            return None
        if not listed:
            return from_input(item, value, InputContext(info, config, scalars, (name,)))
        return [
            from_input(item, each, InputContext(info, config, scalars, (name, index)))
            for index, each in enumerate(value)
        ]

    return convert


def call_resolvers_directly(schema: strawberry.Schema) -> None:
    """Call directly the resolvers whose arguments are plain scalars or input types that build themselves and
    that have no field extensions, when the schema has no exception handlers (which Strawberry's wrapper would
    apply)."""
    if schema.exception_handlers:
        return
    for named in schema._schema.type_map.values():
        if not isinstance(named, GraphQLObjectType) or named.name.startswith("__"):
            continue
        for field in named.fields.values():
            definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
            if (
                isinstance(definition, StrawberryField)
                and definition.base_resolver is not None
                and not definition.extensions
                and not definition.is_subscription  # its resolve hands on the events; subscribe is the resolver
                and (arguments := _arguments(field, definition, schema)) is not None
            ):
                field.resolve = _direct_call(definition, schema.config.info_class, arguments)
