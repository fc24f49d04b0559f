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

`call_resolvers_directly` does the same for the resolvers whose arguments are plain scalars (an account's
balance, company, payment methods and usage): Strawberry's wrapper converts arguments, threads field extensions
and handles exceptions for every call, none of which such a resolver needs.
"""

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import strawberry
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    Undefined,
    get_nullable_type,
    is_non_null_type,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.base import StrawberryMaybe
from strawberry.types.field import StrawberryField


class PlainField:
    """How to answer a field with no resolver: the attribute to read, and what completes its value (a scalar's
    or enum's output coercion, or an object type with no `is_type_of` check)."""

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
        if plain.coerce is None and (plain.object_type is None or plain.object_type.is_type_of is not None):
            return None
        return plain


class LeanExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Make one subclass per schema with `for_schema`: it remembers, per type and field, how to answer it."""

    plain_fields: ClassVar[dict[tuple[str, str], PlainField | None]]

    @classmethod
    def for_schema(cls) -> type["LeanExecutionContext"]:
        return type("LeanExecutionContext", (cls,), {"plain_fields": {}})

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        name = field_details_list[0].node.name.value
        key = (parent_type.name, name)
        try:
            plain = self.plain_fields[key]
        except KeyError:
            field = parent_type.fields.get(name)
            plain = self.plain_fields[key] = None if field is None else PlainField.of(field)
        if plain is None or (self.middleware_manager and self.middleware_manager.middlewares):
            return super().execute_field(parent_type, source, field_details_list, path, position_context)
        try:
            value = getattr(source, plain.attribute)
        except Exception:  # graphql-core's path raises it again, located
            value = Undefined
        if value is None and plain.nullable:
            return None
        # An awaitable (a field may hold one) is graphql-core's to await and complete.
        if value is not None and value is not Undefined and not self.is_awaitable(value):
            if plain.object_type is not None:
                return self._sub_selection(plain, value, field_details_list, path, position_context)
            try:
                coerced = plain.coerce(value)  # type: ignore[misc]  # set whenever object_type is not
            except Exception:
                coerced = None
            if coerced is not None and coerced is not Undefined:
                return coerced
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


def _direct_call(
    definition: StrawberryField, info_class: type[strawberry.Info[Any, Any]], names: dict[str, str]
) -> Callable[..., Any]:
    """The resolver of `definition` called as Strawberry calls it (the source as `self`, `root` or `parent`, its
    Info, and its arguments under their Python `names`), without Strawberry's per-call wrapper."""
    resolver = definition.base_resolver
    assert resolver is not None
    function: Callable[..., Any] = resolver.wrapped_func  # type: ignore[assignment]  # a function here
    as_self = resolver.self_parameter is not None
    source_names = [p.name for p in (resolver.parent_parameter, resolver.root_parameter) if p is not None]
    info_name = None if resolver.info_parameter is None else resolver.info_parameter.name

    def resolve(source: Any, info: GraphQLResolveInfo[Any], **given: Any) -> Any:
        arguments = {names[name]: value for name, value in given.items()}
        arguments.update(dict.fromkeys(source_names, source))
        if info_name is not None:
            arguments[info_name] = info_class(_raw_info=info, _field=definition)
        return function(source, **arguments) if as_self else function(**arguments)

    return resolve


def _plain_arguments(
    field: GraphQLField, definition: StrawberryField, schema: strawberry.Schema
) -> dict[str, str] | None:
    """{GraphQL name: Python name} of the field's arguments when Strawberry would pass each as graphql-core parsed
    it (a scalar, optional or not; not an ID, an enum, an input object, a list or a Maybe), else None."""
    names = {}
    for argument in definition.arguments:
        name = schema.config.name_converter.from_argument(argument)
        parsed = None if name not in field.args else get_nullable_type(field.args[name].type)
        # ID covers Strawberry's GlobalID, which it decodes.
        if (
            not isinstance(parsed, GraphQLScalarType)
            or parsed.name == "ID"
            or isinstance(argument.type, StrawberryMaybe)
        ):
            return None
        names[name] = argument.python_name
    return names if len(names) == len(field.args) else None


def call_resolvers_directly(schema: strawberry.Schema) -> None:
    """Call directly the synchronous resolvers whose arguments are all plain scalars and that have no field
    extensions, when the schema has no exception handlers (which Strawberry's wrapper would apply)."""
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
                and not definition.is_async
                and (names := _plain_arguments(field, definition, schema)) is not None
            ):
                field.resolve = _direct_call(definition, schema.config.info_class, names)
