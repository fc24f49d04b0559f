"""Demo data for `make run`: a European account with a complete profile, a card, lead plans and a history.

Idempotent: the demo account is found by its name, and everything is created only with it.
"""

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlmodel import col, delete, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import auth, fx, ledger, payment_methods
from billing.stripe_gateway import StripeGateway
from models import (
    Account,
    AutoRechargeSettings,
    Company,
    LeadPlanSubscription,
    Partner,
    PartnerAccount,
    PaymentMethod,
    PrincipalKind,
    TransactionKind,
)
from models.types import utcnow

DEMO_ACCOUNT = "Nordlicht Solar GmbH"
DEMO_PARTNER = "Demo Partner Agency"
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


async def _history(session: AsyncSession, account: Account) -> None:
    """Top-ups and usage over the last weeks, through the ledger like real money."""
    assert account.id is not None
    entries = [
        (TransactionKind.TOP_UP, 250_000, "Top-up with Visa •••• 4242"),
        (TransactionKind.USAGE_LEADS, -37_500, "Leads: 15 delivered (Solar installs, Bavaria)"),
        (TransactionKind.USAGE_CALLS, -4_260, "Calls: 71 calls, 213 minutes"),
        (TransactionKind.USAGE_AI_AGENT, -1_890, "AI agent: 420 requests, 1.2M tokens"),
        (TransactionKind.TOP_UP, 100_000, "Top-up with Visa •••• 4242"),
        (TransactionKind.USAGE_LEADS, -52_500, "Leads: 21 delivered (Solar installs, Bavaria)"),
        (TransactionKind.ADJUSTMENT, 5_000, "Goodwill credit: duplicate lead"),
        (TransactionKind.USAGE_CALLS, -3_120, "Calls: 52 calls, 156 minutes"),
    ]
    for index, (kind, amount, description) in enumerate(entries):
        posting = await ledger.post(
            session,
            account_id=account.id,
            kind=kind,
            amount_minor=amount,
            description=description,
            idempotency_key=f"demo-{index}",
        )
        # Spread the history over the past weeks so paging and date filters have something to show.
        posting.transaction.created_at = utcnow() - timedelta(days=3 * (len(entries) - index))
    await session.flush()


async def seed(session: AsyncSession) -> Demo:
    existing = (await session.exec(select(Account).where(Account.name == DEMO_ACCOUNT))).first()
    partner = (await session.exec(select(Partner).where(Partner.name == DEMO_PARTNER))).first()
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
    for name, budget, price in (
        ("Solar installs — Bavaria", 300_000, 2_500),
        ("Heat pumps — Munich", 150_000, 3_000),
    ):
        session.add(
            LeadPlanSubscription(
                account_id=account.id,
                name=name,
                monthly_budget_minor=budget,
                price_per_lead_minor=price,
                currency="EUR",
            )
        )
    await _history(session, account)

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
    session: AsyncSession, gateway: StripeGateway, account: Account, *, fresh_stripe: bool
) -> None:
    """Give the demo account a Stripe customer and a saved test card, so Add funds works from GraphiQL.

    A fresh Stripe stand-in (`make run` without keys) starts empty every time, so the customer and card of an
    earlier run are gone there: they are forgotten and made again. With real (test) keys this runs once.
    """
    assert account.id is not None
    if not fresh_stripe and account.stripe_customer_id is not None:
        return
    await session.exec(delete(PaymentMethod).where(col(PaymentMethod.account_id) == account.id))
    account.stripe_customer_id = None
    # Stripe's documented test card: in test mode it becomes a real card object of the customer's.
    card = await payment_methods.attach(session, gateway, account, "pm_card_visa")
    await session.exec(
        update(AutoRechargeSettings)
        .where(
            col(AutoRechargeSettings.account_id) == account.id,
            col(AutoRechargeSettings.payment_method_id).is_(None),
        )
        .values(payment_method_id=card.id)
    )


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
