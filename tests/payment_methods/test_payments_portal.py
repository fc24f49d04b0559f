"""The Stripe customer portal: the return-URL allow-list, and the session call.

localstripe has no billing portal, so the session call goes to a stub Stripe API (a tiny Starlette app on a
loopback port) through the real SDK and gateway.
"""

from collections.abc import AsyncIterator

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from billing.payment_methods import portal
from billing.stripe_gateway import StripeGateway
from tests.support.factories import SYSTEM, create_account, sessions_of
from tests.support.loopback import form, serving
from tests.support.stripe_server import stripe_settings

ALLOWLIST = ["https://app.example.com/billing", "http://localhost:3000"]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://app.example.com/billing", True),
        ("https://app.example.com/billing/return?x=1", True),
        ("https://APP.example.com:443/billing", True),
        ("http://localhost:3000/anything", True),
        ("https://app.example.com/billingevil", False),
        ("https://app.example.com/other", False),
        ("http://app.example.com/billing", False),
        ("https://app.example.com.evil.com/billing", False),
        ("https://app.example.com@evil.com/billing", False),
        ("https://evil.com/?https://app.example.com/billing", False),
        ("http://localhost:3001/", False),
        ("javascript:alert(1)", False),
        ("http://localhost:99999/", False),
    ],
)
def test_return_url_allow_list(url: str, allowed: bool) -> None:
    assert portal.is_allowed_return_url(url, ALLOWLIST) is allowed


@pytest.fixture
async def stub_stripe() -> AsyncIterator[str]:
    async def create_session(request: Request) -> JSONResponse:
        fields = form(await request.body())
        return JSONResponse(
            {
                "id": "bps_1",
                "object": "billing_portal.session",
                "customer": fields["customer"],
                "return_url": fields["return_url"],
                "url": f"https://billing.stripe.test/p/{fields['customer']}",
            }
        )

    async with serving(
        Starlette(routes=[Route("/v1/billing_portal/sessions", create_session, methods=["POST"])])
    ) as url:
        yield url


async def test_portal_session_for_the_account_customer(session: AsyncSession, stub_stripe: str) -> None:
    gateway = StripeGateway.from_settings(stripe_settings(stub_stripe))
    account = await create_account(session)
    account.stripe_customer_id = "cus_portal"
    await session.flush()
    assert account.id is not None
    sessions = sessions_of(session)
    url = await portal.create_portal_session(
        sessions, SYSTEM, gateway, account.id, "http://localhost:3000/billing", ALLOWLIST
    )
    assert url == "https://billing.stripe.test/p/cus_portal"
    with pytest.raises(portal.ReturnUrlNotAllowed):
        await portal.create_portal_session(
            sessions, SYSTEM, gateway, account.id, "https://evil.com/", ALLOWLIST
        )
