"""The Stripe customer portal: the return-URL allow-list, and the session call.

The session call goes through the real SDK and gateway to a stub Stripe API (a tiny Starlette app on a loopback
port), and, over GraphQL, to the Stripe stand-in, whose portal is faked at the HTTP layer because localstripe
has none (devtools/stripe_standin_app.py): its session URL serves a page that says so.
"""

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from billing.payment_methods import portal
from billing.stripe_gateway import REFUSED_MISSING, StripeGateway
from tests.support.factories import SYSTEM, create_account, member_key, sessions_of
from tests.support.graphql_client import execute_ok
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


PORTAL = """
mutation ($returnUrl: String!) {
  createBillingPortalSession(input: {returnUrl: $returnUrl}) {
    __typename ... on CreateBillingPortalSessionSuccess { url } ... on Error { message }
  }
}
"""


async def test_the_stand_ins_portal_session_serves_its_page(
    session: AsyncSession, gateway_client: httpx.AsyncClient
) -> None:
    key = await member_key(session, await create_account(session))
    return_url = "http://localhost/billing?from=portal&x=<1>"
    body = await execute_ok(gateway_client, key, PORTAL, {"returnUrl": return_url})
    answer = body["data"]["createBillingPortalSession"]
    assert answer["__typename"] == "CreateBillingPortalSessionSuccess", answer

    async with httpx.AsyncClient() as browser:
        page = await browser.get(answer["url"])
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Billing portal: development stand-in" in page.text
    assert '<a href="http://localhost/billing?from=portal&amp;x=&lt;1&gt;">Return to billing</a>' in page.text


async def test_the_stand_in_refuses_a_customer_it_does_not_know(
    session: AsyncSession, gateway_client: httpx.AsyncClient
) -> None:
    account = await create_account(session)
    account.stripe_customer_id = "cus_ABC123gone"
    await session.flush()
    key = await member_key(session, account)
    body = await execute_ok(gateway_client, key, PORTAL, {"returnUrl": "http://localhost/billing"})
    assert body["data"]["createBillingPortalSession"] == {
        "__typename": "PaymentProviderRejectedError",
        "message": f"The payment provider refused to open the billing portal: {REFUSED_MISSING}",
    }
