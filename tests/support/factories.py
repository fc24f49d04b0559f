"""Small factories: one function per row kind, sensible defaults, keyword overrides."""

from itertools import count

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.db import SessionFactory, session_factory
from billing.keys import service as auth
from billing.scope import Scope
from models import (
    Account,
    Company,
    Partner,
    PartnerAccount,
    PaymentMethod,
    PrincipalKind,
)

_sequence = count(1)
# Tests call services as the worker or a webhook would: for every account (authorization has its own tests).
SYSTEM = Scope.system("tests")


def savepoint_sessions(bind: AsyncConnection) -> SessionFactory:
    """Sessions whose commits only release a savepoint inside the test's rolled-back transaction."""
    return async_sessionmaker(
        bind=bind, class_=AsyncSession, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )


def sessions_of(session: AsyncSession) -> SessionFactory:
    """More sessions like a test's `session` (on its connection, or its engine), for services that commit
    per step."""
    if isinstance(session.bind, AsyncConnection):
        return savepoint_sessions(session.bind)
    assert isinstance(session.bind, AsyncEngine)
    return session_factory(session.bind)


async def create_account(
    session: AsyncSession,
    *,
    name: str | None = None,
    currency: str = "USD",
    country: str = "US",
    time_zone: str = "UTC",
) -> Account:
    account = Account(
        name=name or f"Account {next(_sequence)}", currency=currency, country=country, time_zone=time_zone
    )
    session.add(account)
    await session.flush()
    return account


async def create_company(session: AsyncSession, account: Account, **overrides: str | None) -> Company:
    fields: dict[str, str | None] = {
        "legal_name": "Acme GmbH",
        "registration_number": "HRB 12345",
        "phone": "+4930123456",
        "address_line1": "Unter den Linden 1",
        "city": "Berlin",
        "postal_code": "10117",
        "country": "DE",
    }
    fields.update(overrides)
    assert account.id is not None
    company = Company(account_id=account.id)
    for name, value in fields.items():
        setattr(company, name, value)
    session.add(company)
    await session.flush()
    return company


async def create_payment_method(
    session: AsyncSession, account: Account, *, is_default: bool = True, last4: str = "4242"
) -> PaymentMethod:
    assert account.id is not None
    method = PaymentMethod(
        account_id=account.id,
        stripe_payment_method_id=f"pm_test_{next(_sequence)}",
        brand="visa",
        last4=last4,
        exp_month=12,
        exp_year=2030,
        is_default=is_default,
    )
    session.add(method)
    await session.flush()
    return method


async def create_partner(session: AsyncSession, *accounts: Account, name: str | None = None) -> Partner:
    partner = Partner(name=name or f"Partner {next(_sequence)}")
    session.add(partner)
    await session.flush()
    assert partner.id is not None
    for account in accounts:
        assert account.id is not None
        session.add(PartnerAccount(partner_id=partner.id, account_id=account.id))
    await session.flush()
    return partner


async def member_key(session: AsyncSession, account: Account) -> str:
    _, raw = await auth.create_api_key(
        session, kind=PrincipalKind.MEMBER, name="test member", account_id=account.id
    )
    return raw


async def partner_key(session: AsyncSession, partner: Partner) -> str:
    _, raw = await auth.create_api_key(
        session, kind=PrincipalKind.PARTNER, name="test partner", partner_id=partner.id
    )
    return raw


async def admin_key(session: AsyncSession) -> str:
    _, raw = await auth.create_api_key(session, kind=PrincipalKind.ADMIN, name="test admin")
    return raw
