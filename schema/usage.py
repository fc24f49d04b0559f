"""The usage overview cards: this month's lead spending, calling and AI agent usage."""

import strawberry

from billing import usage_summary
from schema.money import Money
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
