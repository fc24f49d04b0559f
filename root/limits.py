"""Bounded cost, decided before any resolver runs (README "Limits").

A document is parsed with a token limit, then its shape is measured (depth, aliases, root fields, repeated
fields, fields once fragments are expanded), then graphql-core validates it, then the cost of the operation to run is estimated
with its variables. Each refusal is a request error naming its limit: `extensions: {code, limit, actual}`.

The first three steps depend on the query text alone, so they are cached by that text. This replaces
Strawberry's ParserCache and ValidationCache (whose key hashes the whole document tree on every request, about
150 µs for the Billing page's query): a repeated query costs one dictionary lookup, and nothing here builds a
rule class per request.

The cost model: every selected field costs 1, and a connection (a field with a `first` argument) costs 1 plus
`first` times the cost of what it selects, so nested pages multiply. `first` comes from the literal, the
variable, the variable's default or the argument's default in the schema, in that order; a page of 0 is
counted as 1 (it still runs its query). Other lists are counted once: they are small and bounded by the data
(an account's cards and lead plans). Introspection (`__schema`, `__type`) costs 1 and its depth is not counted,
as before: GraphiQL's introspection query is deeper than any operation of the API.
"""

import dataclasses
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    specified_rules,
)
from graphql.language.parser import Parser
from strawberry.extensions import AddValidationRules
from strawberry.schema.schema import validate_document

from billing.lru import LruCache
from schema.errors import Result, ResultShaping, is_statement_timeout

logger = logging.getLogger("billing.graphql")

# Query texts longer than this are parsed and validated every time: a real client's documents are far
# smaller, and an attacker's unique large documents must not fill memory through the cache.
CACHED_QUERY_LENGTH = 16_384
CACHED_DOCUMENTS = 256


@dataclasses.dataclass(frozen=True)
class OperationLimits:
    """The figures each operation must fit in (settings `GRAPHQL_MAX_*`)."""

    max_tokens: int = 2_000
    max_depth: int = 12
    max_aliases: int = 30
    max_root_fields: int = 20
    max_repeated_fields: int = 50
    max_cost: int = 20_000
    # PostgreSQL's statement_timeout (DB_STATEMENT_TIMEOUT_SECONDS), named when it ends a statement.
    statement_timeout_seconds: float | None = None


def limit_error(
    code: str,
    message: str,
    *,
    limit: int | float,
    actual: int | None = None,
    nodes: Sequence[Any] | Any | None = None,
) -> GraphQLError:
    """A refusal the client can act on: the code names the limit; `limit` and `actual` are the figures."""
    extensions: dict[str, object] = {"code": code, "limit": limit}
    if actual is not None:
        extensions["actual"] = actual
    return GraphQLError(message, nodes, extensions=extensions)


def coded(error: GraphQLError, code: str) -> GraphQLError:
    """The error with `extensions.code` set, unless it already names one (a scalar's own BAD_USER_INPUT)."""
    if not (error.extensions or {}).get("code"):
        error.extensions = {**(error.extensions or {}), "code": code}
    return error


# ---------------------------------------------------------------------------------------------- parsing


# GraphQL's tokens (comments count too), to refuse a long document before the parser, which is pure Python
# and about a hundred times slower, reads any of it. Possessive quantifiers: no backtracking.
_TOKEN = re.compile(
    r'"""(?:[^"\\]++|\\.|"(?!""))*+"""'  # block string
    r'|"[^"\\\n\r]*+(?:\\.[^"\\\n\r]*+)*+"'  # string
    r"|#[^\n\r]*+"  # comment
    r"|\.\.\.|[!$&():=@\[\]{|}]"  # punctuator
    r"|-?[0-9]++(?:\.[0-9]++)?(?:[eE][+-]?[0-9]++)?"  # number
    r"|[_A-Za-z][_0-9A-Za-z]*+",  # name
    re.DOTALL,
)


def parse_document(query: str, max_tokens: int) -> DocumentNode:
    """The parsed document, or a GraphQLError: TOO_MANY_TOKENS (counting stops at the limit, so a megabyte is
    refused in about a millisecond), GRAPHQL_PARSE_FAILED for a syntax error or a document nested too deeply
    to parse."""
    too_many = limit_error(
        "TOO_MANY_TOKENS", f"The document has more than {max_tokens:,} tokens.", limit=max_tokens
    )
    if sum(1 for _ in islice(_TOKEN.finditer(query), max_tokens + 1)) > max_tokens:
        raise too_many
    # The parser's own limits hold the same line should its count ever differ from the one above.
    parser = Parser(query, max_lexical_tokens=max_tokens, max_comments=max_tokens)
    try:
        return parser.parse_document()
    except RecursionError:
        error: GraphQLError = GraphQLError("The document is nested too deeply to parse.")
    except GraphQLSyntaxError as syntax_error:
        error = syntax_error
    if error.message.startswith(f"Syntax Error: Document contains more than {max_tokens} "):
        raise too_many
    raise coded(error, "GRAPHQL_PARSE_FAILED")


# ------------------------------------------------------------------------------------------------ shape


@dataclasses.dataclass(frozen=True)
class Shape:
    """What a selection set amounts to once its fragments are expanded."""

    height: int = 0  # field levels below it (introspection not counted)
    fields: int = 0  # field selections
    aliases: int = 0
    top_fields: int = 0  # field selections at its own level
    # Its own level's response names: how many selections have each, and how many fields they hold in all.
    top_names: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    nested_repeats: int = 0  # `repeats` of the selection sets below its own level

    @property
    def repeats(self) -> int:
        """The fields (each with those below it) under a response name selected more than once in their
        selection set: validation compares every two selections of one name, and then what they select."""
        own = sum(fields for count, fields in self.top_names.values() if count > 1)
        return self.nested_repeats + own


def _spreads(selection_set: SelectionSetNode) -> Iterator[str]:
    for selection in selection_set.selections:
        if isinstance(selection, FragmentSpreadNode):
            yield selection.name.value
        elif isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set:
            yield from _spreads(selection.selection_set)


def _fragment_order(fragments: Mapping[str, FragmentDefinitionNode]) -> tuple[list[str], dict[str, int]]:
    """Fragments in dependency order (each after those it spreads), and how deep spreads nest from each.

    Iterative, so a chain of a thousand fragments cannot exhaust the stack. Fragments in a cycle, or spreading
    an unknown fragment, never become ready: they count as empty here, and validation reports them.
    """
    spreads = {name: set(_spreads(fragment.selection_set)) for name, fragment in fragments.items()}
    blocked = {name for name, used in spreads.items() if not used <= fragments.keys()}
    waiting_on = {name: len(used) for name, used in spreads.items()}
    used_by: dict[str, list[str]] = {}
    for name, used in spreads.items():
        for other in used:
            used_by.setdefault(other, []).append(name)
    ready = [name for name, count in waiting_on.items() if count == 0 and name not in blocked]
    order: list[str] = []
    nesting: dict[str, int] = {}
    while ready:
        name = ready.pop()
        order.append(name)
        nesting[name] = 1 + max((nesting[other] for other in spreads[name]), default=0)
        for user in used_by.get(name, ()):
            waiting_on[user] -= 1
            if waiting_on[user] == 0 and user not in blocked:
                ready.append(user)
    return order, nesting


def _shape(selection_set: SelectionSetNode, fragments: Mapping[str, Shape]) -> Shape:
    """Recursion follows the document's own nesting, which the parser bounds; fragments are looked up."""
    height = fields = aliases = top_fields = nested_repeats = 0
    names: dict[str, tuple[int, int]] = {}
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            below = _shape(selection.selection_set, fragments) if selection.selection_set else Shape()
            if not selection.name.value.startswith("__") and selection.selection_set is not None:
                height = max(height, 1 + below.height)  # introspection is not counted
            part = Shape(
                fields=1 + below.fields,
                aliases=below.aliases + (selection.alias is not None),
                top_fields=1,
                top_names={(selection.alias or selection.name).value: (1, 1 + below.fields)},
                nested_repeats=below.repeats,
            )
        elif isinstance(selection, InlineFragmentNode):
            part = _shape(selection.selection_set, fragments)
        else:
            assert isinstance(selection, FragmentSpreadNode)  # the only other kind of selection
            part = fragments.get(selection.name.value, Shape())
        height = max(height, part.height)
        fields += part.fields
        aliases += part.aliases
        top_fields += part.top_fields
        nested_repeats += part.nested_repeats
        for name, (count, held) in part.top_names.items():
            known_count, known_held = names.get(name, (0, 0))
            names[name] = (known_count + count, known_held + held)
    return Shape(height, fields, aliases, top_fields, names, nested_repeats)


def _refusal(
    code: str, what: str, actual: int, limit: int, node: OperationDefinitionNode | None
) -> GraphQLError:
    message = f"The operation {what.format(f'{actual:,}')}; the limit is {limit:,}."
    return limit_error(code, message, limit=limit, actual=actual, nodes=node)


def shape_errors(document: DocumentNode, limits: OperationLimits) -> list[GraphQLError]:
    """The limits each operation of the document exceeds, measured on the syntax alone: before validation,
    whose work grows with the sizes these limits bound."""
    definitions = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    order, nesting = _fragment_order(definitions)
    deepest = max(nesting.values(), default=0)
    if deepest > limits.max_depth:
        return [_refusal("QUERY_TOO_DEEP", "nests fragment spreads {} deep", deepest, limits.max_depth, None)]
    fragments: dict[str, Shape] = {}
    for name in order:
        fragments[name] = _shape(definitions[name].selection_set, fragments)
    errors = []
    for operation in document.definitions:
        if not isinstance(operation, OperationDefinitionNode):
            continue
        shape = _shape(operation.selection_set, fragments)
        for code, what, actual, limit in (
            ("QUERY_TOO_DEEP", "nests {} levels deep", shape.height, limits.max_depth),
            ("TOO_MANY_ALIASES", "uses {} aliases", shape.aliases, limits.max_aliases),
            ("TOO_MANY_ROOT_FIELDS", "selects {} root fields", shape.top_fields, limits.max_root_fields),
            # Validation (OverlappingFieldsCanBeMerged) compares every two selections of one response name
            # in a set, then what they select: `{ account { name name … } }` takes time quadratic in them.
            (
                "TOO_MANY_REPEATED_FIELDS",
                "selects {} fields under response names selected more than once in one selection set",
                shape.repeats,
                limits.max_repeated_fields,
            ),
            # Every field costs at least 1: a lower bound of the cost, known before validation.
            (
                "QUERY_TOO_COSTLY",
                "selects {} fields once fragments are expanded",
                shape.fields,
                limits.max_cost,
            ),
        ):
            if actual > limit:
                errors.append(_refusal(code, what, actual, limit, operation))
    return errors


# ------------------------------------------------------------------------------------------------- cost


def _whole_number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclasses.dataclass(frozen=True)
class PageSize:
    """A connection's `first` where it multiplies a variable cost, or is a variable itself."""

    fallback: int
    variable: str | None = None

    def of(self, variables: Mapping[str, object]) -> int:
        given = _whole_number(variables.get(self.variable)) if self.variable else None
        return max(self.fallback if given is None else given, 1)


@dataclasses.dataclass(frozen=True)
class CostPlan:
    """An operation's cost as a formula of its variables: `fixed` plus each page size times its selection."""

    fixed: int = 0
    scaled: tuple[tuple[PageSize, "CostPlan"], ...] = ()

    def __add__(self, other: "CostPlan") -> "CostPlan":
        return CostPlan(self.fixed + other.fixed, self.scaled + other.scaled)

    def times(self, size: int | PageSize) -> "CostPlan":
        if isinstance(size, int):
            if not self.scaled:
                return CostPlan(max(size, 1) * self.fixed)
            size = PageSize(size)
        return CostPlan(0, ((size, self),))

    def evaluate(self, variables: Mapping[str, object]) -> int:
        return self.fixed + sum(size.of(variables) * plan.evaluate(variables) for size, plan in self.scaled)


class _CostPlanner:
    """Builds the plan of one operation of a validated document (fragments are acyclic and known)."""

    def __init__(
        self, schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
    ) -> None:
        self.schema = schema
        self.fragments = {
            definition.name.value: definition
            for definition in document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        self.variable_defaults = {
            definition.variable.name.value: int(definition.default_value.value)
            for definition in operation.variable_definitions or ()
            if isinstance(definition.default_value, IntValueNode)
        }
        self.fragment_plans: dict[str, CostPlan] = {}

    def page_size(self, node: FieldNode, field: GraphQLField) -> int | PageSize | None:
        argument = field.args.get("first")
        if argument is None:
            return None
        default = _whole_number(argument.default_value) or 1
        value = next((given.value for given in node.arguments or () if given.name.value == "first"), None)
        if isinstance(value, IntValueNode):
            return int(value.value)
        if isinstance(value, VariableNode):
            name = value.name.value
            return PageSize(self.variable_defaults.get(name, default), name)
        return default

    def plan(self, selection_set: SelectionSetNode, parent: GraphQLNamedType | None) -> CostPlan:
        plan = CostPlan()
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                plan += CostPlan(1)
                field = (
                    parent.fields.get(selection.name.value)
                    if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType)
                    else None
                )
                if field is None or selection.selection_set is None:
                    continue  # a leaf, `__typename`, or introspection (costs 1)
                below = self.plan(selection.selection_set, get_named_type(field.type))
                size = self.page_size(selection, field)
                plan += below if size is None else below.times(size)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                narrowed = self.schema.get_type(condition.name.value) if condition else parent
                plan += self.plan(selection.selection_set, narrowed)
            elif isinstance(selection, FragmentSpreadNode):
                plan += self.fragment_plan(selection.name.value)
        return plan

    def fragment_plan(self, name: str) -> CostPlan:
        if name not in self.fragment_plans:
            fragment = self.fragments[name]
            self.fragment_plans[name] = self.plan(
                fragment.selection_set, self.schema.get_type(fragment.type_condition.name.value)
            )
        return self.fragment_plans[name]


def cost_plan(schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode) -> CostPlan:
    root = {
        OperationType.QUERY: schema.query_type,
        OperationType.MUTATION: schema.mutation_type,
        OperationType.SUBSCRIPTION: schema.subscription_type,
    }[operation.operation]
    return _CostPlanner(schema, document, operation).plan(operation.selection_set, root)


def selected_operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name is not None and o.name.value == name), None)


# ------------------------------------------------------------------------------------------- the checks


@dataclasses.dataclass
class CheckedDocument:
    """A query text's parse, shape check and validation; the cost plans of its operations, made on demand."""

    document: DocumentNode
    errors: list[GraphQLError]
    plans: dict[str | None, CostPlan] = dataclasses.field(default_factory=dict)


class DocumentChecks:
    """The checks of one schema, with their cache (shared by every request served by that schema)."""

    def __init__(self, limits: OperationLimits) -> None:
        self.limits = limits
        self._cache: LruCache[tuple[str, tuple[type[ASTValidationRule], ...]], CheckedDocument] = LruCache(
            CACHED_DOCUMENTS
        )
        # Trusted documents (server_trusted_documents.py): checked once at start, never evicted.
        self._pinned: dict[tuple[str, tuple[type[ASTValidationRule], ...]], CheckedDocument] = {}

    def pin(
        self, schema: GraphQLSchema, query: str, rules: tuple[type[ASTValidationRule], ...]
    ) -> CheckedDocument:
        """The text's checks and the cost plans of its operations, made now and kept for good."""
        checked = self.check(schema, query, rules)
        if not checked.errors:
            for operation in checked.document.definitions:
                if isinstance(operation, OperationDefinitionNode):
                    self.cost(schema, checked, operation)
            self._pinned[(query, rules)] = checked
        return checked

    def check(
        self, schema: GraphQLSchema, query: str, rules: tuple[type[ASTValidationRule], ...]
    ) -> CheckedDocument:
        """Raises the parse error (or TOO_MANY_TOKENS); returns the shape or validation errors, if any."""
        key = (query, rules)
        pinned = self._pinned.get(key)
        if pinned is not None:
            return pinned
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        document = parse_document(query, self.limits.max_tokens)
        errors = shape_errors(document, self.limits) or [
            coded(error, "GRAPHQL_VALIDATION_FAILED") for error in validate_document(schema, document, rules)
        ]
        checked = CheckedDocument(document, errors)
        if len(query) <= CACHED_QUERY_LENGTH:
            self._cache.put(key, checked)
        return checked

    def cost(
        self, schema: GraphQLSchema, checked: CheckedDocument, operation: OperationDefinitionNode
    ) -> CostPlan:
        name = operation.name.value if operation.name else None
        if name not in checked.plans:
            checked.plans[name] = cost_plan(schema, checked.document, operation)
        return checked.plans[name]


class OperationLimitsExtension(ResultShaping):
    """Parses, checks and validates through `DocumentChecks`, estimates the cost, and reports it on every
    response as `extensions.cost = {requested, limit}` so a client sees how close it is.

    Variable coercion errors (a wrong type, a missing or null required value, an unknown enum value) are
    request errors too: graphql-core chains its own error to them, so they leave here as plain BAD_USER_INPUT
    errors. A statement PostgreSQL ended at its statement_timeout leaves as STATEMENT_TIMEOUT, not as a
    crash. The ErrorPolicy leaves both to this extension, whichever of the two shapes a result first (over
    HTTP this one, over the WebSocket the ErrorPolicy: see ResultShaping).
    """

    def __init__(self, checks: DocumentChecks) -> None:
        super().__init__()
        self.checks = checks
        self.checked: CheckedDocument | None = None
        self.requested: int | None = None

    def shape(self, result: Result) -> None:
        if result.errors:
            nothing_ran = result.data is None
            result.errors = [self._shaped(error, nothing_ran) for error in result.errors]

    def _shaped(self, error: GraphQLError, nothing_ran: bool) -> GraphQLError:
        if is_statement_timeout(error.original_error):
            logger.warning("statement timeout in %s", error.path)
            seconds = self.checks.limits.statement_timeout_seconds
            message = "A database statement took too long and was cancelled."
            extensions: dict[str, object] = {"code": "STATEMENT_TIMEOUT"}
            if seconds is not None:
                message = f"A database statement took longer than {seconds:g} s and was cancelled."
                extensions["limit"] = seconds
            return GraphQLError(
                message, error.nodes, error.source, error.positions, error.path, extensions=extensions
            )
        return _as_request_error(error) if nothing_ran else error

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        assert context.query is not None  # Strawberry refuses a missing query before parsing
        self.checked = self.checks.check(context.schema._schema, context.query, context.validation_rules)
        context.graphql_document = self.checked.document
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert self.checked is not None
        # Strawberry runs the first operation when none is named; GetOperation() refuses to choose instead.
        name = context._provided_operation_name
        operation = selected_operation(self.checked.document, name)
        if self.checked.errors:
            context.pre_execution_errors = list(self.checked.errors)
        elif operation is None:
            message = "The document holds several operations: name the one to run in `operationName`."
            context.pre_execution_errors = [coded(GraphQLError(message), "GRAPHQL_VALIDATION_FAILED")]
        else:
            plan = self.checks.cost(context.schema._schema, self.checked, operation)
            self.requested = plan.evaluate(context.variables or {})
            limit = self.checks.limits.max_cost
            what = (
                "has an estimated cost of {} (a connection's `first` multiplies the cost of what it selects)"
            )
            too_costly = self.requested > limit
            context.pre_execution_errors = (
                [_refusal("QUERY_TOO_COSTLY", what, self.requested, limit, operation)] if too_costly else []
            )
        yield

    def get_results(self) -> dict[str, Any]:
        if self.requested is None:
            return {}
        return {"cost": {"requested": self.requested, "limit": self.checks.limits.max_cost}}


def _as_request_error(error: GraphQLError) -> GraphQLError:
    """A variable coercion error (no path: nothing executed) as BAD_USER_INPUT, without graphql-core's chained
    error; anything else unchanged (parse and validation errors are coded already, crashes stay for the
    ErrorPolicy to mask)."""
    if error.path is not None:
        return error
    if isinstance(error.original_error, GraphQLError):
        return GraphQLError(
            error.message,
            error.nodes,
            error.source,
            error.positions,
            extensions={**(error.extensions or {}), "code": "BAD_USER_INPUT"},
        )
    return coded(error, "BAD_USER_INPUT") if error.original_error is None else error


class LimitsExtensionFactory:
    """The extension factory for a schema: one cache per schema (`checks`), one extension instance per request."""

    def __init__(self, limits: OperationLimits) -> None:
        self.checks = DocumentChecks(limits)

    def __call__(self) -> OperationLimitsExtension:
        return OperationLimitsExtension(self.checks)


def limits_extension(limits: OperationLimits) -> LimitsExtensionFactory:
    return LimitsExtensionFactory(limits)


def document_checks(extensions: Iterable[object]) -> DocumentChecks:
    """The checks (and their cache) a schema's extensions use: give it `schema.extensions`."""
    return next(e.checks for e in extensions if isinstance(e, LimitsExtensionFactory))


def validation_rules(extensions: Iterable[object]) -> tuple[type[ASTValidationRule], ...]:
    """The rules a schema's requests are validated with, as Strawberry assembles them: graphql-core's, then
    those each AddValidationRules extension (e.g. DisableIntrospection) appends."""
    rules = list(specified_rules)
    for extension in extensions:
        if isinstance(extension, type) and issubclass(extension, AddValidationRules):
            rules.extend(extension().validation_rules)  # type: ignore[call-arg]
    return tuple(rules)
