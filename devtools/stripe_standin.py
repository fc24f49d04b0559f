"""localstripe, a Stripe stand-in, for tests and for `make run` without Stripe keys.

The process runs devtools/stripe_standin_app.py: localstripe's aiohttp app on loopback, its store in memory,
plus a development billing portal (localstripe has none).
"""

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from billing.config import DEVELOPMENT_WEBHOOK_SECRET

STRIPE_KEY = "sk_test_localstripe"
WEBHOOK_SECRET = DEVELOPMENT_WEBHOOK_SECRET

# The stand-in runs as `python -m devtools.stripe_standin_app`, from the repository's root whatever our own cwd.
_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_listening(url: str, process: subprocess.Popen[bytes], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"localstripe exited with {process.returncode}")
        try:
            httpx.get(f"{url}/v1/balance", headers={"Authorization": f"Bearer {STRIPE_KEY}"}, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)  # polling a starting process, bounded by the deadline
    raise RuntimeError(f"localstripe did not answer within {seconds}s")


@contextmanager
def running() -> Iterator[str]:
    """A fresh localstripe on a free loopback port for the duration of the block; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.stripe_standin_app", str(port)],
        cwd=_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_listening(url, process)
        yield url
    finally:
        process.kill()
        process.wait(timeout=10)


class LocalStripe:
    """Helpers talking to localstripe directly: cards from test numbers, 3-D Secure, refunds, webhooks."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._headers = {"Authorization": f"Bearer {STRIPE_KEY}"}

    async def _post(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url, headers=self._headers) as client:
            response = await client.post(path, data=data)
        response.raise_for_status()
        return dict(response.json()) if response.content else {}

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url, headers=self._headers) as client:
            response = await client.get(path, params=params)
        response.raise_for_status()
        return dict(response.json())

    async def card(self, number: str = "4242424242424242") -> str:
        """A card payment method as Stripe Elements would create it in the browser; returns its id."""
        method = await self._post(
            "/v1/payment_methods",
            {
                "type": "card",
                "card[number]": number,
                "card[exp_month]": "12",
                "card[exp_year]": "2034",
                "card[cvc]": "123",
            },
        )
        return str(method["id"])

    async def complete_3ds(self, payment_intent_id: str, client_secret: str, *, success: bool = True) -> None:
        """What the customer's bank does once they authenticate (localstripe's own test endpoint)."""
        await self._post(
            f"/v1/payment_intents/{payment_intent_id}/_authenticate",
            {"client_secret": client_secret, "success": "true" if success else "false"},
        )

    async def charges(self, customer_id: str) -> list[dict[str, Any]]:
        page = await self._get("/v1/charges", {"customer": customer_id, "limit": 100})
        return list(page["data"])

    async def refund(self, payment_intent_id: str, amount_minor: int) -> dict[str, Any]:
        return await self._post("/v1/refunds", {"payment_intent": payment_intent_id, "amount": amount_minor})

    async def retrieve(self, path: str) -> dict[str, Any]:
        return await self._get(path)

    async def deliver_webhooks_to(self, url: str, name: str = "tests") -> None:
        await self._post(f"/_config/webhooks/{name}", {"url": url, "secret": WEBHOOK_SECRET})
