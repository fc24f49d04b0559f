"""The Stripe customer portal: the return-URL allow-list, and the session call.

localstripe has no billing portal, so the session call goes to a stub Stripe API (a tiny Starlette app on a
loopback port) through the real SDK and gateway.
"""

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

import pytest
import uvicorn
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from billing import portal
from billing.stripe_gateway import StripeGateway
from tests.factories import create_account
from tests.stripe_server import free_port, stripe_settings
from tests.test_webhooks import started

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
        form = {key: values[0] for key, values in parse_qs((await request.body()).decode()).items()}
        return JSONResponse(
            {
                "id": "bps_1",
                "object": "billing_portal.session",
                "customer": form["customer"],
                "return_url": form["return_url"],
                "url": f"https://billing.stripe.test/p/{form['customer']}",
            }
        )

    app = Starlette(routes=[Route("/v1/billing_portal/sessions", create_session, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    await asyncio.wait_for(started(server), timeout=10)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await serving


async def test_portal_session_for_the_account_customer(session: AsyncSession, stub_stripe: str) -> None:
    gateway = StripeGateway.from_settings(stripe_settings(stub_stripe))
    account = await create_account(session)
    account.stripe_customer_id = "cus_portal"
    url = await portal.create_portal_session(
        session, gateway, account, "http://localhost:3000/billing", ALLOWLIST
    )
    assert url == "https://billing.stripe.test/p/cus_portal"
    with pytest.raises(portal.ReturnUrlNotAllowed):
        await portal.create_portal_session(session, gateway, account, "https://evil.com/", ALLOWLIST)
