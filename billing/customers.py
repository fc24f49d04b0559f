"""Each account's Stripe customer: created on first need, kept in step with the company profile."""

from sqlmodel.ext.asyncio.session import AsyncSession

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


async def sync_customer(
    session: AsyncSession, gateway: StripeGateway, account: Account, company: Company | None
) -> str:
    """Create or update the customer from the company profile (the account name until there is one)."""
    assert account.id is not None
    customer_id = await gateway.ensure_customer(
        customer_id=account.stripe_customer_id,
        name=(company.legal_name if company else None) or account.name,
        phone=company.phone if company else None,
        address=_address(company) if company else None,
        account_id=account.id,
    )
    if account.stripe_customer_id != customer_id:
        account.stripe_customer_id = customer_id
        await session.flush()
    return customer_id


async def customer_id(session: AsyncSession, gateway: StripeGateway, account: Account) -> str:
    """The account's Stripe customer, created now if it has none yet."""
    if account.stripe_customer_id is not None:
        return account.stripe_customer_id
    assert account.id is not None
    return await sync_customer(session, gateway, account, await session.get(Company, account.id))
