"""The usage overview cards: this month's lead spending, calling and AI agent usage."""

import functools
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.schema.name_converter import NameConverter
from strawberry.types.arguments import InputContext
from strawberry.types.base import get_object_definition

from billing.errors import InvalidArgument
from billing.usage import service as usage
from billing.usage import summary as usage_summary
from schema.errors import DeclaredErrors, Error, on
from schema.money import Money
from schema.node import from_global_id
from schema.permissions import PermissionDeniedError
from schema.scalars import BigInt


@strawberry.type
class LeadSpending:
    spent: Money
    leads_received: BigInt
    active_subscriptions: int
    remaining_budget: Money = strawberry.field(
        description="Active plans' monthly budgets minus this month's lead spending, never below zero."
    )


@strawberry.type
class CallingUsage:
    spent: Money
    calls: BigInt
    minutes: BigInt = strawberry.field(description="A started minute counts as one.")


@strawberry.type
class AiAgentUsage:
    cost: Money
    requests: BigInt
    input_tokens: BigInt
    output_tokens: BigInt
    total_tokens: BigInt


@strawberry.type(description="One calendar month in the account's time zone, read from monthly rollups.")
class UsageSummary:
    month: str = strawberry.field(description="YYYY-MM")
    lead_spending: LeadSpending
    calling: CallingUsage
    ai_agent: AiAgentUsage

    @classmethod
    def of(cls, summary: usage_summary.UsageSummary, country: str) -> "UsageSummary":
        def money(minor: int) -> Money:
            return Money.of(minor, summary.currency, country)

        leads, calling, ai = summary.leads, summary.calling, summary.ai_agent
        return cls(
            month=str(summary.month),
            lead_spending=LeadSpending(
                spent=money(leads.spent_minor),
                leads_received=BigInt(leads.leads),
                active_subscriptions=leads.active_subscriptions,
                remaining_budget=money(leads.remaining_budget_minor),
            ),
            calling=CallingUsage(
                spent=money(calling.spent_minor), calls=BigInt(calling.calls), minutes=BigInt(calling.minutes)
            ),
            ai_agent=AiAgentUsage(
                cost=money(ai.cost_minor),
                requests=BigInt(ai.requests),
                input_tokens=BigInt(ai.input_tokens),
                output_tokens=BigInt(ai.output_tokens),
                total_tokens=BigInt(ai.total_tokens),
            ),
        )


@strawberry.input(description="One usage event. Its cost is in the account's billing currency.")
class UsageEventInput:
    external_id: str = strawberry.field(description="The reporter's id; an event sent again is applied once.")
    account_id: strawberry.ID
    occurred_at: datetime = strawberry.field(description="With a UTC offset; not in the future.")
    category: str = strawberry.field(description="'lead', 'call' or 'ai_agent'.")
    cost: str = strawberry.field(description="Exact decimal, e.g. '25.00'; at most the currency's decimals.")
    lead_plan_id: strawberry.ID | None = strawberry.field(
        default=None, description="lead: the plan it counts against."
    )
    duration_seconds: int | None = strawberry.field(default=None, description="call")
    input_tokens: BigInt | None = strawberry.field(default=None, description="ai_agent")
    output_tokens: BigInt | None = strawberry.field(default=None, description="ai_agent")


def _usage_event(
    cls: type[UsageEventInput], value: Mapping[str, Any], context: InputContext
) -> usage.UsageEvent:
    """A UsageEventInput's value as the domain's event (recordUsage declares its argument as events of the
    domain, with UsageEventInput as its GraphQL type). Its fields are all scalars, which graphql-core has already
    parsed, so they are taken as they are: Strawberry's generic conversion resolved each field's type again,
    and an input object built only to be converted again was thrown away, for each of a batch's 1,000 events."""
    fields = {
        python: value[graphql]
        for graphql, python in _names(context.config.name_converter)
        if graphql in value
    }
    lead_plan = fields.get("lead_plan_id")
    try:
        fields["account_id"] = from_global_id(fields["account_id"], "Account", "accountId")
        fields["lead_plan_id"] = from_global_id(lead_plan, "LeadPlan", "leadPlanId") if lead_plan else None
    except InvalidArgument as error:
        # Named where it is in the arguments, e.g. events[3].accountId: the path is made only for a bad ID.
        where = "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in context.path).lstrip(".")
        raise error.named(lambda name: f"{where}.{name}") from None
    return usage.UsageEvent(**fields)


@functools.cache
def _names(converter: NameConverter) -> tuple[tuple[str, str], ...]:
    """(GraphQL name, Python name) of each field of UsageEventInput: its Python names are the domain event's."""
    return tuple((converter.from_field(field), field.python_name) for field in _DEFINITION.fields)


_DEFINITION = get_object_definition(UsageEventInput, strict=True)


_DEFINITION.from_input = _usage_event


@strawberry.type
class RecordUsageSuccess:
    recorded: int = strawberry.field(description="New events, debited and counted in the usage overview.")
    duplicates: int = strawberry.field(description="Events recorded before (same account and external id).")


@strawberry.type
class UsageEventProblem:
    index: int = strawberry.field(description="Position of the event in `events`.")
    external_id: str
    field: str
    message: str


@strawberry.type(description="Nothing of the batch was recorded: fix these events and send the batch again.")
class UsageRejectedError(Error):
    problems: list[UsageEventProblem]


RecordUsagePayload = Annotated[
    RecordUsageSuccess | UsageRejectedError | PermissionDeniedError, strawberry.union("RecordUsagePayload")
]


# Domain field names (usage.UsageEvent) as the client sees them in UsageEventInput.
_USAGE_EVENT_FIELD_PATHS = {
    "external_id": "externalId",
    "account_id": "accountId",
    "occurred_at": "occurredAt",
    "category": "category",
    "cost": "cost",
    "lead_plan_id": "leadPlanId",
    "duration_seconds": "durationSeconds",
    "input_tokens": "inputTokens",
    "output_tokens": "outputTokens",
}


def usage_event_field_path(name: str) -> str:
    return _USAGE_EVENT_FIELD_PATHS.get(name, name)


def rejected(error: usage.UsageRejected, _where: object) -> UsageRejectedError:
    return UsageRejectedError(
        message=error.message,
        problems=[
            UsageEventProblem(
                index=p.index,
                external_id=p.external_id,
                field=usage_event_field_path(p.field),
                message=p.message,
            )
            for p in error.problems
        ],
    )


# A batch spans accounts: no one account's country to write money in (nor any money in these errors).
RECORD_USAGE_ERRORS: DeclaredErrors[RecordUsagePayload, None] = DeclaredErrors(
    on(usage.UsageRejected, rejected)
)
