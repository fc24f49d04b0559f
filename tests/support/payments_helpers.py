"""Money-in test set-up: an account with a complete company profile and a real localstripe card."""

from sqlmodel.ext.asyncio.session import AsyncSession

from billing.payment_methods import service as payment_methods
from billing.stripe_gateway import StripeGateway
from models import Account, PaymentMethod
from tests.support.factories import SYSTEM, create_account, create_company, sessions_of
from tests.support.stripe_server import LocalStripe

OK_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000341"  # attaches, then every charge is declined
THREE_D_SECURE_CARD = "4000002760003184"  # every charge needs authentication


async def ready_account(
    session: AsyncSession, gateway: StripeGateway, localstripe: LocalStripe, *, number: str = OK_CARD
) -> tuple[Account, PaymentMethod]:
    account = await create_account(session, currency="USD")
    await create_company(session, account)
    assert account.id is not None
    await session.commit()  # visible to the service's own sessions (in tests, this releases a savepoint)
    attached = await payment_methods.attach(
        sessions_of(session), SYSTEM, gateway, account.id, await localstripe.card(number)
    )
    await session.refresh(account)
    method = await session.get(PaymentMethod, attached.id)
    assert method is not None
    return account, method
