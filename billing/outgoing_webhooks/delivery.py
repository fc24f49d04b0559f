"""Sending the outbox of outgoing webhooks: at least once, in order per endpoint, signed per Standard Webhooks.

- The worker sends them in a loop of its own (`run_worker`), beside the auto-recharge loop (billing/worker.py):
  a receiver slow to answer never delays a recharge, and a charge slow at Stripe never delays a delivery.
- Several workers never send the same delivery at once: claiming is `SELECT ... FOR UPDATE SKIP LOCKED` plus a
  lease (`locked_until`) longer than one attempt can take; a worker that dies mid-send loses the delivery when
  the lease runs out and another sends it again, with the same `webhook-id` (receivers de-duplicate on it).
  Each claim counts an attempt, and recording checks it still holds that attempt (a fencing token).
- No database connection is held during the HTTP call: claim and commit, send, then record in a new
  transaction.
- In order per endpoint (an endpoint belongs to one account): a delivery is claimed only when no earlier one of
  its endpoint is still pending, whether it is being sent by another worker, backing off after a failure, or
  due, so a receiver sees an account's events in the order they happened (one that keeps failing holds the
  later ones back until it is given up).
- Retries back off over about a day (`BACKOFF`); then the delivery is failed and its endpoint marked failing.
  A success marks a failing endpoint active again.
- Every attempt resolves the host again and checks every address (billing.outgoing_webhooks.service), then connects
  to a checked address (the TLS name and Host header stay the URL's), so a name that changes its answer after
  it was saved cannot point us into our own network.
"""

import asyncio
import json
import logging
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlmodel.ext.asyncio.session import AsyncSession
from standardwebhooks.webhooks import Webhook

from billing.config import Settings
from billing.db import SessionFactory, unit_of_work
from billing.outgoing_webhooks import service as webhooks_outgoing
from billing.outgoing_webhooks.repository import OutgoingWebhookRepository
from billing.outgoing_webhooks.service import UnsafeWebhookUrl, resolved_addresses
from billing.scope import Scope
from models import (
    WebhookDeliveryStatus,
    WebhookEndpointStatus,
)
from models.types import utcnow

logger = logging.getLogger(__name__)

# The wait after each failed attempt: 8 attempts over about 27 hours, then the delivery is failed.
BACKOFF: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
# How often the worker looks for cards about to expire (each is told once per card and month, whatever this is).
EXPIRING_CARDS_EVERY = timedelta(hours=1)
# What is kept of a receiver's answer, for the owner to read in `webhookDeliveries`.
RESPONSE_BODY_KEPT = 1_000
_ERROR_KEPT = 500
# The worker sends and queues for every account: no caller is behind it.
_SYSTEM = Scope.system("the webhook delivery worker")


@dataclass(frozen=True)
class _Claimed:
    delivery_id: int
    endpoint_id: int
    attempt: int  # the delivery's `attempts` when claimed: the fencing token of the write that records it
    url: str
    secret: str
    webhook_id: str
    body: str


@dataclass(frozen=True)
class _Outcome:
    succeeded: bool
    response_status: int | None = None
    response_body: str | None = None
    error: str | None = None


def lease_for(settings: Settings) -> timedelta:
    """Longer than an attempt can take (the name's resolution and the request, each bounded)."""
    return timedelta(seconds=2 * settings.webhook_timeout_seconds + 5)


async def run_once(
    factory: SessionFactory,
    settings: Settings,
    *,
    now: datetime | None = None,
    batch_size: int = 20,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """Claim the due deliveries, send each (concurrently), record each outcome; returns how many were sent."""
    now = now or utcnow()
    async with unit_of_work(factory) as session:
        claimed = await _claim(session, now=now, lease=lease_for(settings), limit=batch_size)
    if not claimed:
        return 0
    # Straight to the checked address: no redirect to follow elsewhere, no proxy from the environment.
    async with httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False) as client:
        outcomes = await asyncio.gather(*(_send(client, item, settings) for item in claimed))
    for item, outcome in zip(claimed, outcomes, strict=True):
        async with unit_of_work(factory) as session:
            await _record(session, item, outcome, now=now)
    return len(claimed)


async def run_worker(factory: SessionFactory, settings: Settings, *, stop_event: asyncio.Event) -> None:
    """Send what is due, pass after pass, until `stop_event` is set; sleeps `webhook_poll_seconds` only after a
    pass that found nothing to send. Once at start and every `EXPIRING_CARDS_EVERY` it queues
    `payment_method.expiring` for cards about to expire (billing.outgoing_webhooks.service)."""
    loop = asyncio.get_running_loop()
    next_card_check = loop.time()
    while not stop_event.is_set():
        if loop.time() >= next_card_check:
            next_card_check = loop.time() + EXPIRING_CARDS_EVERY.total_seconds()
            try:
                async with unit_of_work(factory) as session:
                    await webhooks_outgoing.queue_expiring_cards(session, _SYSTEM, now=utcnow())
            except Exception:
                # The database being down must not end the worker; the next check carries on.
                logger.exception("queueing payment_method.expiring webhooks failed")
        try:
            sent = await run_once(factory, settings)
        except Exception:
            logger.exception("webhook delivery pass failed")
            sent = 0
        if sent == 0:
            with suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), settings.webhook_poll_seconds)


def _repository(session: AsyncSession) -> OutgoingWebhookRepository:
    return OutgoingWebhookRepository(session, _SYSTEM)


async def _claim(session: AsyncSession, *, now: datetime, lease: timedelta, limit: int) -> list[_Claimed]:
    """Due deliveries nobody holds, with no earlier delivery of their endpoint still pending, leased here."""
    claimed = []
    for delivery, endpoint in await _repository(session).claim_due(now=now, limit=limit):
        assert delivery.id is not None
        delivery.attempts += 1
        delivery.locked_until = now + lease
        body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)
        claimed.append(
            _Claimed(
                delivery.id,
                delivery.endpoint_id,
                delivery.attempts,
                endpoint.url,
                endpoint.secret,
                delivery.webhook_id,
                body,
            )
        )
    return claimed


async def _send(client: httpx.AsyncClient, item: _Claimed, settings: Settings) -> _Outcome:
    timeout = settings.webhook_timeout_seconds
    try:
        host, addresses = await asyncio.wait_for(
            resolved_addresses(item.url, loopback_allowed=settings.webhook_loopback_allowed), timeout
        )
    except UnsafeWebhookUrl as error:
        return _Outcome(False, error=str(error))
    except TimeoutError:
        return _Outcome(False, error="resolving the host timed out")
    timestamp = utcnow()
    headers = {
        "content-type": "application/json",
        "webhook-id": item.webhook_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(item.secret).sign(item.webhook_id, timestamp, item.body),
        "host": urlsplit(item.url).netloc,
    }
    try:
        response = await client.post(
            _at_address(item.url, addresses[0]),
            content=item.body.encode(),
            headers=headers,
            timeout=timeout,
            # TLS checks the certificate against the URL's name, not the address connected to.
            extensions={"sni_hostname": host},
        )
    except httpx.TimeoutException:
        return _Outcome(False, error=f"no answer within {timeout:g} s")
    except httpx.HTTPError as error:
        return _Outcome(False, error=f"{type(error).__name__}: {error}"[:_ERROR_KEPT])
    body = response.text[:RESPONSE_BODY_KEPT]
    if response.is_success:
        return _Outcome(True, response.status_code, body)
    return _Outcome(False, response.status_code, body, f"the receiver answered {response.status_code}")


def _at_address(url: str, address: str) -> str:
    """The URL with its host replaced by the checked address it resolved to (IPv6 in brackets)."""
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def _record(session: AsyncSession, item: _Claimed, outcome: _Outcome, *, now: datetime) -> None:
    """The attempt's outcome, unless this worker lost the delivery meanwhile (another attempt holds it)."""
    retry_index = item.attempt - 1
    given_up = not outcome.succeeded and retry_index >= len(BACKOFF)
    values: dict[str, object] = {
        "locked_until": None,
        "last_response_status": outcome.response_status,
        "last_response_body": outcome.response_body,
        "last_error": outcome.error,
    }
    if outcome.succeeded:
        values |= {"status": WebhookDeliveryStatus.SUCCEEDED, "delivered_at": now}
    elif given_up:
        values |= {"status": WebhookDeliveryStatus.FAILED}
    else:
        values |= {"next_attempt_at": now + BACKOFF[retry_index]}
    repository = _repository(session)
    if not await repository.record_attempt(item.delivery_id, item.attempt, values):
        logger.info(
            "webhook delivery %s was taken over; attempt %s not recorded", item.delivery_id, item.attempt
        )
        return
    if outcome.succeeded or given_up:
        # A receiver that answers again is healthy again; one that exhausted a delivery's retries is failing.
        health = WebhookEndpointStatus.ACTIVE if outcome.succeeded else WebhookEndpointStatus.FAILING
        await repository.set_health(item.endpoint_id, health, now=now)
    if given_up:
        logger.warning("webhook delivery %s failed after %s attempts", item.delivery_id, item.attempt)
