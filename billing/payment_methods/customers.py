"""Each account's Stripe customer: created on first need, kept in step with the company profile.

Every function here that calls Stripe takes a session *factory*: it reads in one short transaction, calls
Stripe with no connection held, and records the outcome in another.
"""

from billing.accounts.repository import AccountRepository
from billing.company.repository import CompanyRepository
from billing.db import SessionFactory, read_session, unit_of_work
from billing.errors import NotFound
from billing.payment_methods.repository import PaymentMethodRepository
from billing.scope import Scope
from billing.stripe_gateway import CustomerAddress, StripeGateway
from models import Account, Company


def _address(company: Company) -> CustomerAddress | None:
    if not (company.address_line1 and company.city and company.postal_code and company.country):
        return None
    return CustomerAddress(
        line1=company.address_line1,
        line2=company.address_line2,
        city=company.city,
        postal_code=company.postal_code,
        region=company.region,
        country=company.country,
    )


async def push_customer(
    factory: SessionFactory, scope: Scope, gateway: StripeGateway, account: Account, company: Company | None
) -> str:
    """Create or update the account's customer from this company profile (the account name until there is
    one), and remember its id. Creation is idempotent at Stripe per account, so a race creates one."""
    assert account.id is not None
    customer_id = await gateway.ensure_customer(
        customer_id=account.stripe_customer_id,
        name=(company.legal_name if company else None) or account.name,
        phone=company.phone if company else None,
        address=_address(company) if company else None,
        account_id=account.id,
    )
    if account.stripe_customer_id != customer_id:
        async with unit_of_work(factory) as session:
            await PaymentMethodRepository(session, scope).set_customer(account.id, customer_id)
        account.stripe_customer_id = customer_id
    return customer_id


async def customer_id(factory: SessionFactory, scope: Scope, gateway: StripeGateway, account_id: int) -> str:
    """The account's Stripe customer, created now if it has none yet."""
    async with read_session(factory) as session:
        account = (await AccountRepository(session, scope).by_ids([account_id])).get(account_id)
        if account is None:
            raise NotFound("account not found")
        if account.stripe_customer_id is not None:
            return account.stripe_customer_id
        company = await CompanyRepository(session, scope).of_account(account_id)
    return await push_customer(factory, scope, gateway, account, company)
