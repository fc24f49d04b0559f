"""Signed Stripe events delivered to the whole app over HTTP, as Stripe delivers them, and what got recorded.

Events are signed here like Stripe signs them: HMAC-SHA256 over `<timestamp>.<raw body bytes>` with the
endpoint's secret, so bodies that are not JSON or not UTF-8 can be signed too.
"""

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import count
from typing import Any

import httpx
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.config import Environment
from billing.db import SessionFactory
from models import StripeEvent, Transaction
from tests.support.gateway import open_gateway
from tests.support.stripe_server import WEBHOOK_SECRET, stripe_settings

_ids = count(1)


@asynccontextmanager
async def app_client(
    session_factory: SessionFactory, stripe_api_base: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app talking to the Stripe stand-in at `stripe_api_base`, on the test's rolled-back data."""
    async with open_gateway(
        stripe_settings(stripe_api_base, environment=Environment.TEST), session_factory
    ) as client:
        yield client


def new_event_id() -> str:
    return f"evt_test_{next(_ids)}_{time.time_ns()}"


def event(type_: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {"id": event_id or new_event_id(), "object": "event", "type": type_, "data": {"object": obj}}


def signature(payload: bytes, *, secret: str = WEBHOOK_SECRET, signed_at: int | None = None) -> str:
    at = int(time.time()) if signed_at is None else signed_at
    digest = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


async def deliver(
    client: httpx.AsyncClient,
    body: dict[str, Any] | bytes,
    *,
    secret: str = WEBHOOK_SECRET,
    age: int = 0,
) -> httpx.Response:
    """POST one event signed `age` seconds ago (negative: in the future)."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(
        "/webhooks/stripe",
        content=payload,
        headers={
            "Stripe-Signature": signature(payload, secret=secret, signed_at=int(time.time()) - age),
            "Content-Type": "application/json",
        },
    )


async def recorded(session: AsyncSession, event_id: str) -> StripeEvent | None:
    statement = (
        select(StripeEvent).where(StripeEvent.id == event_id).execution_options(populate_existing=True)
    )
    return (await session.exec(statement)).first()


async def stored_events(session: AsyncSession) -> int:
    return int((await session.exec(select(func.count()).select_from(StripeEvent))).one())


async def ledger_entries(session: AsyncSession) -> int:
    return int((await session.exec(select(func.count()).select_from(Transaction))).one())


async def fresh(session: AsyncSession, entry: Transaction) -> Transaction:
    """The entry as the database has it now (the app wrote it through other sessions)."""
    found = await session.get(Transaction, entry.id, populate_existing=True)
    assert found is not None
    return found
