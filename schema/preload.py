"""The parts of accounts a query shows, fetched in one read before their fields resolve.

graphql-core runs each async field that has async siblings as a task of its own: on the partner dashboard that
was five tasks per account. So the query entry points fetch the parts of `Account` its selection names, through
the same loaders (the same statements the fields would cause), in the read that found the accounts or right
after it, and those fields answer at once from the loaders' caches (`now_or_later`). A field reached another
way (a subscription, `usage(month:)`) still waits on its loader.
"""

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, TypeAlias, TypeVar

from graphql import (
    ArgumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    NamedTypeNode,
    SelectionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    value_from_ast_untyped,
)
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.repository import ShownAccount
from billing.lru import LruCache
from schema.context import Info
from schema.loaders import (
    AutoRechargeByAccount,
    CompanyByAccount,
    FundingStateByAccount,
    LeadPlansByAccount,
    Loader,
    PaymentMethodsByAccount,
    UsageByAccountMonth,
    UsdRateByCurrency,
)

R = TypeVar("R")
# A field's value, or (when its loader has not fetched it yet) an awaitable of it.
NowOrLater: TypeAlias = R | Awaitable[R]

# Where an account is in the selection of each query entry point, and the type conditions it may be under.
ACCOUNT_TYPES = frozenset({"Account", "Node"})


def now_or_later(convert: Callable[..., R], *futures: "asyncio.Future[Any]") -> NowOrLater[R]:
    """`convert` of the futures' results: at once when they are all done, else a coroutine awaiting them."""
    if all(future.done() for future in futures):
        return convert(*(future.result() for future in futures))

    async def later() -> R:
        return convert(*[await future for future in futures])

    return later()


def _account_id(row: ShownAccount) -> int | None:
    return row.id


def _usd_rate_key(row: ShownAccount) -> str | None:
    return None if row.currency == "USD" else row.currency  # Account.balance asks no rate for USD


def _this_month(row: ShownAccount) -> tuple[int, None] | None:
    return None if row.id is None else (row.id, None)


KeyOf = Callable[[ShownAccount], Hashable | None]
# Account's fields answered by loaders, with the loaders each asks and its key for an account row.
PARTS: dict[str, tuple[tuple[type[Loader[Any, Any]], KeyOf], ...]] = {
    "balance": ((UsdRateByCurrency, _usd_rate_key),),
    "company": ((CompanyByAccount, _account_id),),
    "canAddFunds": ((CompanyByAccount, _account_id), (PaymentMethodsByAccount, _account_id)),
    "paymentMethods": ((PaymentMethodsByAccount, _account_id),),
    "leadPlans": ((LeadPlansByAccount, _account_id),),
    "autoRecharge": ((AutoRechargeByAccount, _account_id),),
    "fundingState": ((FundingStateByAccount, _account_id),),
    "usage": ((UsageByAccountMonth, _this_month),),
}


# A condition a request's variables must meet for a field to count: a variable, and the test its value must pass.
Condition: TypeAlias = tuple[str, Callable[[Any], bool]]
# The Account fields (answered by loaders) a selection names, each with the conditions it is selected under.
Plan: TypeAlias = tuple[tuple[str, tuple[Condition, ...]], ...]


def _not_true(value: Any) -> bool:
    return value is not True


def _not_false(value: Any) -> bool:
    return value is not False


def _is_none(value: Any) -> bool:
    return value is None


# @skip(if:) drops a selection when true, @include(if:) when false.
DIRECTIVE_TESTS = {"skip": _not_true, "include": _not_false}


def _condition(value: ValueNode | None, test: Callable[[Any], bool]) -> Condition | bool:
    """The condition `value` passes `test` (a variable's value is known per request), or whether it does (a
    literal, or an absent argument: None)."""
    if isinstance(value, VariableNode):
        return (value.name.value, test)
    return test(None if value is None else value_from_ast_untyped(value))


def _argument(arguments: Iterable[ArgumentNode] | None, name: str) -> ValueNode | None:
    return next((argument.value for argument in arguments or () if argument.name.value == name), None)


def _with_directives(
    selection: SelectionNode, conditions: tuple[Condition, ...]
) -> tuple[Condition, ...] | None:
    """`conditions` and those of the selection's @skip and @include; None when a literal one drops it."""
    for directive in selection.directives or ():
        test = DIRECTIVE_TESTS.get(directive.name.value)
        if test is None:
            continue
        condition = _condition(_argument(directive.arguments, "if"), test)
        if condition is False:
            return None
        if condition is not True:
            conditions += (condition,)
    return conditions


Selected: TypeAlias = Iterable[tuple[SelectionNode, tuple[Condition, ...]]]


def _fields(
    selections: Selected, fragments: dict[str, FragmentDefinitionNode], types: frozenset[str] | None
) -> Iterator[tuple[FieldNode, tuple[Condition, ...]]]:
    """The fields of a selection set with their conditions, through its fragments (those on `types`, when
    given) and without those a literal @skip or @include drops."""
    for selection, outer in selections:
        conditions = _with_directives(selection, outer)
        if conditions is None:
            continue
        if isinstance(selection, FieldNode):
            yield selection, conditions
            continue
        if isinstance(selection, FragmentSpreadNode):
            fragment = fragments[selection.name.value]
            type_condition: NamedTypeNode | None = fragment.type_condition
            selection_set: SelectionSetNode | None = fragment.selection_set
        else:
            assert isinstance(selection, InlineFragmentNode)
            type_condition, selection_set = selection.type_condition, selection.selection_set
        if types is None or type_condition is None or type_condition.name.value in types:
            yield from _fields(_below(selection_set, conditions), fragments, types)


def _below(selection_set: SelectionSetNode | None, conditions: tuple[Condition, ...]) -> Selected:
    return ((selection, conditions) for selection in (selection_set.selections if selection_set else ()))


def _plan(
    field_nodes: Sequence[FieldNode], fragments: dict[str, FragmentDefinitionNode], path: Sequence[str]
) -> Plan:
    """The Account fields answered by loaders selected on the accounts at `path` below these field nodes."""
    found: list[tuple[SelectionNode, tuple[Condition, ...]]] = [
        selected for node in field_nodes for selected in _below(node.selection_set, ())
    ]
    for name in path:
        found = [
            selected
            for field, conditions in _fields(found, fragments, None)
            if field.name.value == name
            for selected in _below(field.selection_set, conditions)
        ]
    plan: list[tuple[str, tuple[Condition, ...]]] = []
    for field, conditions in _fields(found, fragments, ACCOUNT_TYPES):
        name = field.name.value
        if name not in PARTS:
            continue
        if name == "usage":
            # another month than this one is left to the field's own loader
            month = _condition(_argument(field.arguments, "month"), _is_none)
            if month is False:
                continue
            if month is not True:
                conditions += (month,)
        plan.append((name, conditions))
    return tuple(plan)


# Plans by the field nodes (identity) they are for and the path: the limits extension (root/limits.py) reuses a
# query text's parsed document, so its nodes recur across requests. Each entry holds its nodes, so their ids are
# not reused while it lives; the plan depends on the document alone, the variables are tested per request.
CACHED_PLANS = 512
_plans: LruCache[tuple[tuple[int, ...], tuple[str, ...]], tuple[Sequence[FieldNode], Plan]] = LruCache(
    CACHED_PLANS
)


def _cached_plan(info: Info, path: Sequence[str]) -> Plan:
    raw = info._raw_info
    key = (tuple(map(id, raw.field_nodes)), tuple(path))
    cached = _plans.get(key)
    if cached is not None:
        return cached[1]
    plan = _plan(raw.field_nodes, raw.fragments, path)
    _plans.put(key, (tuple(raw.field_nodes), plan))
    return plan


def wanted_parts(info: Info, path: Sequence[str]) -> dict[type[Loader[Any, Any]], KeyOf]:
    """The loaders the selected fields of the accounts at `path` below the field being resolved ask, with
    their keys."""
    variables = info.variable_values
    wanted: dict[type[Loader[Any, Any]], KeyOf] = {}
    for name, conditions in _cached_plan(info, path):
        if not conditions or all(test(variables.get(variable)) for variable, test in conditions):
            wanted.update(PARTS[name])
    return wanted


async def prefetch(
    info: Info,
    session: AsyncSession,
    rows: Sequence[ShownAccount],
    wanted: dict[type[Loader[Any, Any]], KeyOf],
) -> None:
    """Fetch, in the caller's read, the parts `wanted` (see `wanted_parts`) of these accounts."""
    for loader_class, key_of in wanted.items():
        loader = info.context.loader(loader_class)
        if isinstance(loader, UsageByAccountMonth):
            loader.accounts.update({row.id: row for row in rows if row.id is not None})
        await loader.prefetch(session, [key for row in rows if (key := key_of(row)) is not None])
