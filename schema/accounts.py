"""The account and its balance: the top of the Billing page."""

from datetime import date, datetime
from decimal import Decimal

import strawberry

from billing.accounts.funding import FundingState
from billing.accounts.repository import ShownAccount
from billing.audit import service as audit
from billing.auto_recharge.service import AutoRechargeView
from billing.company.repository import CompanyRow
from billing.errors import InvalidArgument
from billing.fx import service as fx
from billing.lead_plans.repository import LeadPlanRow
from billing.ledger import history as transactions
from billing.months import InvalidMonth, parse_month
from billing.outgoing_webhooks import service as webhooks_outgoing
from billing.payment_methods.repository import PaymentMethodRow
from billing.scope import Scope
from billing.topups import service as payments
from billing.usage import summary as usage_summary
from schema.audit import AuditEntry, AuditEntryConnection
from schema.auto_recharge import AutoRecharge
from schema.company import Company, company_field_path
from schema.context import Info
from schema.lead_plans import LeadPlan
from schema.ledger import Transaction, TransactionConnection, TransactionFilter
from schema.loaders import (
    AutoRechargeByAccount,
    CompanyByAccount,
    FundingStateByAccount,
    LeadPlansByAccount,
    PaymentMethodsByAccount,
    UsageByAccountMonth,
    UsdRateByCurrency,
)
from schema.money import Money
from schema.node import Node, to_global_id
from schema.outgoing_webhooks import WebhookDelivery, WebhookDeliveryConnection, WebhookEndpoint
from schema.pagination import Edge
from schema.payment_methods import PaymentMethod
from schema.preload import NowOrLater, now_or_later
from schema.usage import UsageSummary


@strawberry.type(
    description="A reference exchange rate (European Central Bank) and the day it was published."
)
class FxRate:
    rate: str = strawberry.field(description="Units of `quote` per one unit of `base`, exact decimal.")
    base: str
    quote: str
    date: date
    source: str


@strawberry.type
class Balance:
    available: Money = strawberry.field(description="The funds in the account, in its billing currency.")
    usd_equivalent: Money | None = strawberry.field(
        description="For accounts not billed in USD: the available balance in USD at `fxRate`."
    )
    fx_rate: FxRate | None


@strawberry.type(description="Whether Add funds can go ahead, and what to complete first when not.")
class AddFundsReadiness:
    ready: bool
    missing_company_fields: list[str]
    has_payment_method: bool


@strawberry.type
class Account(Node):
    name: str
    currency: str = strawberry.field(description="ISO 4217 billing currency.")
    country: str
    time_zone: str
    created_at: datetime
    model: strawberry.Private[ShownAccount]

    @classmethod
    def from_model(cls, row: ShownAccount) -> "Account":
        assert row.id is not None
        return cls(
            id=to_global_id("Account", row.id),
            name=row.name,
            currency=row.currency,
            country=row.country,
            time_zone=row.time_zone,
            created_at=row.created_at,
            model=row,
        )

    @property
    def pk(self) -> int:
        assert self.model.id is not None
        return self.model.id

    # The fields below answer from their loaders: at once when the query prefetched them (schema/preload.py),
    # else once the loader has fetched (the GraphQL type is declared, since the Python one may be awaitable).
    @strawberry.field(graphql_type=Balance)
    def balance(self, info: Info) -> NowOrLater[Balance]:
        row = self.model
        available = Money.of(row.balance_minor, row.currency, row.country)
        if row.currency == "USD":
            return Balance(available=available, usd_equivalent=None, fx_rate=None)

        def of(found: tuple[Decimal, date] | None) -> Balance:
            if found is None:
                return Balance(available=available, usd_equivalent=None, fx_rate=None)
            usd = fx.to_usd(row.balance_minor, row.currency, *found)
            return Balance(
                available=available,
                usd_equivalent=Money.of(usd.amount_minor, "USD", row.country),
                fx_rate=FxRate(
                    rate=str(usd.rate), base=row.currency, quote="USD", date=usd.rate_date, source=usd.source
                ),
            )

        return now_or_later(of, info.context.loader(UsdRateByCurrency).load(row.currency))

    @strawberry.field(graphql_type=Company | None)
    def company(self, info: Info) -> NowOrLater[Company | None]:
        def of(row: CompanyRow | None) -> Company | None:
            return Company.from_model(row) if row is not None else None

        return now_or_later(of, info.context.loader(CompanyByAccount).load(self.pk))

    @strawberry.field(
        description="Whether Add funds can go ahead: a complete company profile and a saved card.",
        graphql_type=AddFundsReadiness,
    )
    def can_add_funds(self, info: Info) -> NowOrLater[AddFundsReadiness]:
        def of(company: CompanyRow | None, cards: list[PaymentMethodRow]) -> AddFundsReadiness:
            found = payments.readiness(company, cards)
            return AddFundsReadiness(
                ready=found.ready,
                missing_company_fields=[company_field_path(name) for name in found.missing_company_fields],
                has_payment_method=found.has_payment_method,
            )

        return now_or_later(
            of,
            info.context.loader(CompanyByAccount).load(self.pk),
            info.context.loader(PaymentMethodsByAccount).load(self.pk),
        )

    @strawberry.field(
        description="A calendar month (YYYY-MM) in the account's time zone; default: this month.",
        graphql_type=UsageSummary,
    )
    def usage(self, info: Info, month: str | None = None) -> NowOrLater[UsageSummary]:
        try:
            wanted = parse_month(month) if month is not None else None
        except InvalidMonth as error:
            raise InvalidArgument("month", error.message) from None

        def of(summary: usage_summary.UsageSummary | None) -> UsageSummary:
            assert summary is not None  # a summary for every account row handed in
            return UsageSummary.of(summary, self.country)

        return now_or_later(of, info.context.loader(UsageByAccountMonth).load_for(self.model, wanted))

    @strawberry.field(graphql_type=list[PaymentMethod])
    def payment_methods(self, info: Info) -> NowOrLater[list[PaymentMethod]]:
        def of(rows: list[PaymentMethodRow]) -> list[PaymentMethod]:
            return [PaymentMethod.from_model(row) for row in rows]

        return now_or_later(of, info.context.loader(PaymentMethodsByAccount).load(self.pk))

    @strawberry.field(graphql_type=list[LeadPlan])
    def lead_plans(self, info: Info) -> NowOrLater[list[LeadPlan]]:
        def of(rows: list[LeadPlanRow]) -> list[LeadPlan]:
            return [LeadPlan.from_model(row, self.country) for row in rows]

        return now_or_later(of, info.context.loader(LeadPlansByAccount).load(self.pk))

    @strawberry.field(
        description="The auto-recharge settings and the engine's state; null until first saved.",
        graphql_type=AutoRecharge | None,
    )
    def auto_recharge(self, info: Info) -> NowOrLater[AutoRecharge | None]:
        def of(view: AutoRechargeView | None) -> AutoRecharge | None:
            return AutoRecharge.of(view, self.country) if view is not None else None

        return now_or_later(of, info.context.loader(AutoRechargeByAccount).load(self.pk))

    @strawberry.field(description="What lead delivery checks before delivering.", graphql_type=FundingState)
    def funding_state(self, info: Info) -> NowOrLater[FundingState]:
        def of(state: FundingState | None) -> FundingState:
            assert state is not None  # the account was loaded through the same scope
            return state

        return now_or_later(of, info.context.loader(FundingStateByAccount).load(self.pk))

    @strawberry.field(description="Newest first. `first` is at most 100.")
    async def transactions(
        self,
        info: Info,
        first: int = 20,
        after: str | None = None,
        filter: TransactionFilter | None = None,
    ) -> TransactionConnection:
        where = filter.to_domain() if filter else transactions.HistoryFilter()
        page = await info.context.read(
            lambda session: transactions.history(
                session, Scope.of(info.context.principal), self.pk, first=first, after=after, where=where
            )
        )
        edges = [
            Edge(cursor=transactions.transaction_cursor(row), node=Transaction.from_model(row, self.country))
            for row in page.items
        ]
        return TransactionConnection.of(edges, has_next=page.has_next, after=after)

    @strawberry.field(description="Where the account's webhook events are sent (never their secrets).")
    async def webhook_endpoints(self, info: Info) -> list[WebhookEndpoint]:
        rows = await info.context.read(
            lambda session: webhooks_outgoing.endpoints_of(session, Scope.of(info.context.principal), self.pk)
        )
        return [WebhookEndpoint.from_model(row) for row in rows]

    @strawberry.field(
        description="Webhook deliveries to every endpoint, newest first. `first` is at most 100."
    )
    async def webhook_deliveries(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> WebhookDeliveryConnection:
        page = await info.context.read(
            lambda session: webhooks_outgoing.deliveries_of(
                session, Scope.of(info.context.principal), self.pk, first=first, after=after
            )
        )
        edges = [
            Edge(cursor=webhooks_outgoing.delivery_cursor(row), node=WebhookDelivery.from_model(row))
            for row in page.items
        ]
        return WebhookDeliveryConnection.of(edges, has_next=page.has_next, after=after)

    @strawberry.field(
        description="Changes to the billing settings, newest first: who, when, what, from which request. "
        "`first` is at most 100."
    )
    async def audit_log(self, info: Info, first: int = 20, after: str | None = None) -> AuditEntryConnection:
        page = await info.context.read(
            lambda session: audit.audit_log(
                session, Scope.of(info.context.principal), self.pk, first=first, after=after
            )
        )
        edges = [Edge(cursor=audit.audit_cursor(entry), node=AuditEntry.of(entry)) for entry in page.items]
        return AuditEntryConnection.of(edges, has_next=page.has_next, after=after)
