"""Demo data for `make run`: a European account with a complete profile, a card, lead plans and a history.

Idempotent: the demo account is found by its name, and everything is created only with it.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.repository import AccountRepository
from billing.auto_recharge.repository import AutoRechargeRepository
from billing.db import SessionFactory, unit_of_work
from billing.demo_repository import DemoRepository
from billing.fx import service as fx
from billing.keys import service as auth
from billing.keys.service import Principal
from billing.ledger import service as ledger
from billing.money import to_decimal
from billing.months import month_of
from billing.payment_methods import service as payment_methods
from billing.scope import Scope
from billing.stripe_gateway import StripeGateway
from billing.usage import service as usage
from models import (
    Account,
    Company,
    LeadPlanSubscription,
    Partner,
    PartnerAccount,
    PrincipalKind,
    TransactionKind,
)
from models.types import utcnow

DEMO_ACCOUNT = "Nordlicht Solar GmbH"
DEMO_PARTNER = "Demo Partner Agency"
# The seed reports usage like the lead, calling and AI agent services do; no API key stands behind it.
DEMO_REPORTER = Principal(kind=PrincipalKind.USAGE_REPORTER, api_key_id=0)
SYSTEM = Scope.system("the demo seed")
SAMPLE_RATES = Path(__file__).resolve().parent.parent / "data" / "ecb-eurofxref-sample.xml"


@dataclass(frozen=True)
class Demo:
    account: Account
    partner: Partner
    created: bool


async def _account(session: AsyncSession, name: str, currency: str, country: str, time_zone: str) -> Account:
    account = Account(name=name, currency=currency, country=country, time_zone=time_zone)
    session.add(account)
    await session.flush()
    return account


async def _history(session: AsyncSession, account: Account, plans: list[LeadPlanSubscription]) -> None:
    """Top-ups over the past weeks, then this month's usage reported the way the services report it."""
    assert account.id is not None
    credits = [
        (TransactionKind.TOP_UP, 250_000, "Top-up with Visa •••• 4242"),
        (TransactionKind.ADJUSTMENT, 5_000, "Goodwill credit: duplicate lead"),
        (TransactionKind.TOP_UP, 100_000, "Top-up with Visa •••• 4242"),
    ]
    now = utcnow()
    for index, (kind, amount, description) in enumerate(credits):
        posting = await ledger.post(
            session,
            SYSTEM,
            account_id=account.id,
            kind=kind,
            amount_minor=amount,
            description=description,
            idempotency_key=f"demo-{index}",
        )
        # Backdated, so paging and date filters have weeks of history to show.
        posting.transaction.created_at = now - timedelta(days=9 * (len(credits) - index))
    await usage.record_usage(
        session, DEMO_REPORTER, _usage_events(account.id, account.time_zone, plans, now), now=now
    )


def _usage_events(
    account_id: int, time_zone: str, plans: list[LeadPlanSubscription], now: datetime
) -> list[usage.UsageEvent]:
    """About 180 events spread from the start of this month (in the account's time zone) until now."""
    start, _ = month_of(now, time_zone).bounds(time_zone)
    step = (now - start) / 180
    events = []
    for index in range(180):
        at = start + step * index
        if index % 5 == 0:
            plan = plans[index % 2]
            assert plan.id is not None
            cost, extra = to_decimal(plan.price_per_lead_minor, "EUR"), {"lead_plan_id": plan.id}
            category = "lead"
        elif index % 5 in (1, 2):
            seconds = 45 + (index * 37) % 400
            cost, extra, category = Decimal(seconds * 2) / 100, {"duration_seconds": seconds}, "call"
        else:
            tokens = 800 + (index * 131) % 3_000
            cost = Decimal(tokens) / 20_000
            extra, category = {"input_tokens": tokens, "output_tokens": tokens // 4}, "ai_agent"
        events.append(
            usage.UsageEvent(
                external_id=f"demo-{category}-{index}",
                account_id=account_id,
                occurred_at=at,
                category=category,
                cost=cost.quantize(Decimal("0.01")),
                **extra,
            )
        )
    return events


async def seed(session: AsyncSession) -> Demo:
    demo_rows = DemoRepository(session, SYSTEM)
    existing = await demo_rows.account_named(DEMO_ACCOUNT)
    partner = await demo_rows.partner_named(DEMO_PARTNER)
    if existing is not None and partner is not None:
        return Demo(existing, partner, created=False)

    if SAMPLE_RATES.exists():
        await fx.load_rates(session, fx.parse_ecb_xml(SAMPLE_RATES.read_bytes()))
    account = await _account(session, DEMO_ACCOUNT, "EUR", "DE", "Europe/Berlin")
    assert account.id is not None
    session.add(
        Company(
            account_id=account.id,
            legal_name=DEMO_ACCOUNT,
            registration_number="HRB 204871",
            vat_id="DE301234567",
            phone="+498912345678",
            address_line1="Leopoldstraße 120",
            city="München",
            postal_code="80802",
            region="Bayern",
            country="DE",
        )
    )
    plans = [
        LeadPlanSubscription(
            account_id=account.id,
            name=name,
            monthly_budget_minor=budget,
            price_per_lead_minor=price,
            currency="EUR",
        )
        for name, budget, price in (
            ("Solar installs — Bavaria", 300_000, 2_500),
            ("Heat pumps — Munich", 150_000, 3_000),
        )
    ]
    session.add_all(plans)
    await session.flush()
    await _history(session, account, plans)

    partner = Partner(name=DEMO_PARTNER)
    session.add(partner)
    others = [
        await _account(session, "Kestrel Roofing Ltd", "GBP", "GB", "Europe/London"),
        await _account(session, "Prairie HVAC Inc", "USD", "US", "America/Chicago"),
    ]
    await session.flush()
    assert partner.id is not None
    for member in (account, *others):
        assert member.id is not None
        session.add(PartnerAccount(partner_id=partner.id, account_id=member.id))
    await session.flush()
    return Demo(account, partner, created=True)


async def link_card(
    factory: SessionFactory, gateway: StripeGateway, account_id: int, *, fresh_stripe: bool
) -> None:
    """Give the demo account a Stripe customer and a saved test card, so Add funds works from GraphiQL.

    A fresh Stripe stand-in (`make run` without keys) starts empty every time, so the customer and card of an
    earlier run are gone there: they are forgotten and made again. With real (test) keys this runs once.
    """
    async with unit_of_work(factory) as session:
        account = (await AccountRepository(session, SYSTEM).by_ids([account_id]))[account_id]
        if not fresh_stripe and account.stripe_customer_id is not None:
            return
        await DemoRepository(session, SYSTEM).forget_cards(account_id)
        account.stripe_customer_id = None
    # Stripe's documented test card: in test mode it becomes a real card object of the customer's.
    card = await payment_methods.attach(factory, SYSTEM, gateway, account_id, "pm_card_visa")
    assert card.id is not None
    async with unit_of_work(factory) as session:
        await AutoRechargeRepository(session, SYSTEM).use_card_where_none(account_id, card.id)


async def ensure_key(
    session: AsyncSession,
    saved: str | None,
    *,
    kind: PrincipalKind,
    account_id: int | None = None,
    partner_id: int | None = None,
) -> tuple[str, bool]:
    """The saved raw key if it still works, else a new one (keys are stored hashed, so never re-shown)."""
    if saved:
        try:
            await auth.authenticate(session, saved)
            return saved, False
        except auth.InvalidApiKey:
            pass
    _, raw = await auth.create_api_key(
        session, kind=kind, name="demo", account_id=account_id, partner_id=partner_id
    )
    return raw, True
