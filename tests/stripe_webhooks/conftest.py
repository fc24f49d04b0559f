"""The gateway over HTTP, talking to localstripe, for every webhook test of this folder."""

from collections.abc import AsyncIterator

import httpx
import pytest

from billing.db import SessionFactory
from tests.support.webhook_helpers import app_client


@pytest.fixture
async def webhook_client(
    session_factory: SessionFactory, localstripe_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(session_factory, localstripe_url) as client:
        yield client
