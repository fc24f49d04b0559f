"""A pytest plugin: localstripe (a Stripe stand-in, see devtools/stripe_standin.py) for the whole test session,
and a gateway pointed at it.
"""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from billing.config import Settings
from billing.db import SessionFactory
from billing.stripe_gateway import StripeGateway
from devtools import stripe_standin
from devtools.stripe_standin import STRIPE_KEY, WEBHOOK_SECRET, LocalStripe, free_port
from tests.support.gateway import open_gateway

__all__ = ["WEBHOOK_SECRET", "LocalStripe", "free_port", "stripe_settings"]


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    with stripe_standin.running() as url:
        yield url


def stripe_settings(api_base: str, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "stripe_secret_key": STRIPE_KEY,
        "stripe_api_base": api_base,
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "stripe_timeout_seconds": 10,
        "stripe_max_network_retries": 0,
        "embedded_worker": False,  # tests drive the recharge engine themselves
    }
    return Settings(**(fields | overrides))


@pytest.fixture(scope="session")
def stripe_gateway(localstripe_url: str) -> StripeGateway:
    return StripeGateway.from_settings(stripe_settings(localstripe_url))


@pytest.fixture(scope="session")
def localstripe(localstripe_url: str) -> LocalStripe:
    return LocalStripe(localstripe_url)


@pytest.fixture
async def gateway_client(
    session_factory: SessionFactory, localstripe_url: str, stripe_gateway: StripeGateway
) -> AsyncIterator[httpx.AsyncClient]:
    """The app over HTTP, talking to localstripe, its requests in the test's rolled-back transaction."""
    async with open_gateway(
        stripe_settings(localstripe_url), session_factory, stripe=stripe_gateway
    ) as client:
        yield client
