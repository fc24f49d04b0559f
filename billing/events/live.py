"""Live events: each process tells its open subscriptions about committed domain events within a moment of the
commit, whichever process committed.

A signal only names the accounts that changed; it wakes the feeds that follow one of them, and each woken feed
reads what it has not seen yet from the `domain_event` table, past its own cursor and within its principal's
scope as it is at that read. The table is the one source of what happened and in which order (ids follow commit
order, see billing/events/service.py), so a signal that arrives twice or late delivers nothing twice: a feed's cursor
only moves forward. A client that reconnects gives the last id it saw and its feed starts from there.

Signals travel by one transport per configuration (`transport`):
- REDIS_URL set: Redis pub/sub. Every process that commits publishes the accounts of its commits once they
  are committed (`publish_commits`: gateways, with their embedded worker and Stripe's webhooks, and
  `cli worker`); every gateway subscribes on a connection of its own. (On PostgreSQL the commit still NOTIFYs;
  no one LISTENs.)
- PostgreSQL without Redis: the commit NOTIFYs `billing_domain_events`; every gateway LISTENs on a connection
  of its own (never a pooled one: it stays open for the process's life).
- SQLite without Redis: one process (`make run`); its own commits (`events.subscribe`) are all there is.
A gateway hears its own commits back through the transport like any other's. When its connection to the
transport is lost it logs, connects again, and then wakes every feed, so what committed meanwhile is read.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine, Sequence
from contextlib import asynccontextmanager
from enum import StrEnum
from functools import partial
from typing import Any

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.engine import make_url

from billing import shared_redis
from billing.config import Settings
from billing.db import DatabaseBusy, SessionFactory, is_sqlite, read_session
from billing.events import service as events
from billing.events.repository import DomainEventRepository
from billing.events.service import StoredEvent
from billing.keys.service import Principal
from billing.pagination import MAX_BIG_ROW_ID, cursor_row_id, decode_cursor, encode_cursor
from billing.scope import Scope

logger = logging.getLogger(__name__)

# Events read per query: a feed that finds a full batch reads again at once.
BATCH = 100
# A feed whose read was shed (no connection free) tries again after this long.
BUSY_RETRY_SECONDS = 1.0
# A lost connection to the transport is opened again (a signal that could not be published is sent again)
# this long after it failed.
RECONNECT_SECONDS = 1.0
# A signal names at most this many accounts; a commit of more is "*", which wakes every feed.
MAX_SIGNAL_ACCOUNTS = 1_000
# The Redis channel (under REDIS_NAMESPACE); signals read as NOTIFY payloads do.
REDIS_CHANNEL = "domain-events"


class Feed:
    """One subscription's view of the events of some accounts, from a cursor on."""

    def __init__(
        self, sessions: SessionFactory, principal: Principal, accounts: frozenset[int] | None, cursor: int
    ) -> None:
        # None: every account the principal sees, as it sees them at each read (a partner's accounts).
        self.accounts = accounts
        self.cursor = cursor
        self._sessions = sessions
        self._scope = Scope.of(principal)
        self._woken = asyncio.Event()
        # Read at once: a replay from the client's cursor, or what committed while the feed was being set up.
        self._woken.set()

    def wake(self) -> None:
        self._woken.set()

    async def next_events(self) -> list[StoredEvent]:
        """The next events past the cursor, oldest first; waits for a signal when there are none."""
        while True:
            await self._woken.wait()
            self._woken.clear()
            try:
                async with read_session(self._sessions) as session:
                    repository = DomainEventRepository(session, self._scope)
                    found = await repository.since(self.cursor, self.accounts, limit=BATCH)
            except DatabaseBusy:
                self._woken.set()
                await asyncio.sleep(BUSY_RETRY_SECONDS)  # back-off under load, not synchronisation
                continue
            if len(found) == BATCH:
                self._woken.set()  # more are waiting
            if found:
                self.cursor = found[-1].id
                return found


class EventHub:
    """This process's feeds, and the signals that wake them."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions
        self._feeds: set[Feed] = set()

    def wake(self, account_ids: Collection[int] | None) -> None:
        """Wake the feeds following any of these accounts (None: every feed). A feed of every account its
        principal sees is woken by any signal: an account it was granted since is found by its read."""
        for feed in self._feeds:
            if account_ids is None or feed.accounts is None or not feed.accounts.isdisjoint(account_ids):
                feed.wake()

    def committed(self, stored: Sequence[StoredEvent]) -> None:
        """An `events.subscribe` listener: this process committed these events."""
        self.wake({event.account_id for event in stored})

    @asynccontextmanager
    async def feed(
        self, principal: Principal, accounts: frozenset[int] | None, after: int | None
    ) -> AsyncIterator[Feed]:
        """A feed of these accounts' events (None: of every account `principal` sees) after `after`, or (None)
        of those committed from now on."""
        feed = Feed(self._sessions, principal, accounts, after or 0)
        # Registered before "now" is read: an event committed in between is either before the cursor or
        # signalled to this feed, never both missed.
        self._feeds.add(feed)
        try:
            if after is None:
                async with read_session(self._sessions) as session:
                    feed.cursor = await DomainEventRepository(session, Scope.of(principal)).latest_id()
            yield feed
        finally:
            self._feeds.discard(feed)


# ---------------------------------------------------------------------------------------------- transports


class Transport(StrEnum):
    IN_PROCESS = "in-process"
    POSTGRES = "postgres"
    REDIS = "redis"


def transport(settings: Settings) -> Transport:
    """How this configuration's commits reach every gateway's subscriptions."""
    if settings.redis_url:
        return Transport.REDIS
    return Transport.IN_PROCESS if is_sqlite(settings.database_url) else Transport.POSTGRES


async def relay(settings: Settings, carrier: Transport, hub: EventHub, stop: asyncio.Event) -> None:
    """Wake `hub`'s feeds on every commit, as `carrier` carries them, until `stop` is set."""
    if carrier is Transport.REDIS:
        await _keep_listening("Redis pub/sub", partial(_listen_redis, settings, hub), stop)
    elif carrier is Transport.POSTGRES:
        await _keep_listening(
            "PostgreSQL LISTEN", partial(_listen_postgres, settings.database_url, hub), stop
        )
    else:
        unsubscribe = events.subscribe(hub.committed)
        try:
            await stop.wait()
        finally:
            unsubscribe()


def _signal(account_ids: Collection[int] | None) -> str:
    """A signal's payload: the accounts' ids comma-separated, or "*" (every account), as a NOTIFY's."""
    if account_ids is None or len(account_ids) > MAX_SIGNAL_ACCOUNTS:
        return "*"
    return ",".join(str(account_id) for account_id in sorted(account_ids))


def _signalled_accounts(payload: str) -> list[int] | None:
    """The accounts a signal names; None ("*", or a payload we cannot read) means every account."""
    try:
        return [int(part) for part in payload.split(",")] if payload != "*" else None
    except ValueError:
        return None


async def _keep_listening(
    carrier: str, listen: Callable[[], Coroutine[Any, Any, None]], stop: asyncio.Event
) -> None:
    """Run `listen` (it returns or raises once its connection is lost) again and again until `stop`."""
    while not stop.is_set():
        try:
            await _first(stop.wait(), listen())
            lost: object = "connection closed"
        except Exception as error:  # refused, dropped, timed out: whatever the driver calls it, try again
            lost = error
        if stop.is_set():
            return
        logger.warning("%s for domain events lost (%s); listening again", carrier, lost)
        await _first(stop.wait(), asyncio.sleep(RECONNECT_SECONDS))


async def _listen_postgres(database_url: str, hub: EventHub) -> None:
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn, timeout=10)
    lost = asyncio.Event()
    connection.add_termination_listener(lambda _connection: lost.set())
    try:
        await connection.add_listener(
            events.CHANNEL,
            lambda _connection, _pid, _channel, payload: hub.wake(_signalled_accounts(payload)),
        )
        hub.wake(None)  # listening now: whatever committed while no connection listened is read
        await lost.wait()
    finally:
        if not connection.is_closed():
            await connection.close(timeout=5)


async def _listen_redis(settings: Settings, hub: EventHub) -> None:
    client = shared_redis.client(settings, "live-events")
    try:
        async with client.pubsub() as pubsub:
            await pubsub.subscribe(shared_redis.name(settings, REDIS_CHANNEL))
            async for message in pubsub.listen():
                if message["type"] == "subscribe":
                    hub.wake(None)  # listening now: whatever committed while no connection listened is read
                elif message["type"] == "message":
                    hub.wake(_signalled_accounts(message["data"]))
    finally:
        await client.aclose()


async def _first(*waits: Coroutine[Any, Any, object]) -> None:
    """Wait until the first of these finishes (raising what it raised); cancel the others and wait for them."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()


class _Publisher:
    """Publishes the accounts of this process's commits to Redis. Commits that come while a message is being
    published go out together in the next one; a message that could not be published is sent again, with what
    committed meanwhile, until it is."""

    def __init__(self, client: Redis, channel: str) -> None:
        self._client = client
        self._channel = channel
        self._pending: set[int] | None = set()  # None: every account
        self._ready = asyncio.Event()

    def committed(self, stored: Sequence[StoredEvent]) -> None:
        """An `events.subscribe` listener: called in the committing task, so it only notes the accounts."""
        if self._pending is not None:
            self._pending.update(event.account_id for event in stored)
            if len(self._pending) > MAX_SIGNAL_ACCOUNTS:
                self._pending = None
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            if not await self.publish():
                await asyncio.sleep(RECONNECT_SECONDS)  # back-off while Redis is away

    async def publish(self) -> bool:
        """Publish what is pending; False (and it stays pending) when Redis did not take it."""
        self._ready.clear()
        accounts, self._pending = self._pending, set()
        published = False
        try:
            await self._client.publish(self._channel, _signal(accounts))
            published = True
        except RedisError as error:
            logger.warning("cannot publish domain events to Redis (%s); trying again", error)
        finally:
            if not published:  # failed, or cancelled by `stop` midway: `close` sends it
                self._pending = (
                    None if accounts is None or self._pending is None else accounts | self._pending
                )
                self._ready.set()
        return published

    async def close(self) -> None:
        if self._ready.is_set():
            await self.publish()
        await self._client.aclose()


async def _nothing() -> None:
    return None


def publish_commits(settings: Settings) -> Callable[[], Awaitable[None]]:
    """With REDIS_URL: from now on this process's commits are published to every gateway. The returned function
    stops that, once it has published what is still pending (await it after the process's last commit).
    Without Redis there is nothing to publish: the commit's NOTIFY, or this process's own listeners, carry it."""
    if settings.redis_url is None:
        return _nothing
    publisher = _Publisher(
        shared_redis.client(settings, "live-events-publisher"), shared_redis.name(settings, REDIS_CHANNEL)
    )
    unsubscribe = events.subscribe(publisher.committed)
    running = asyncio.ensure_future(publisher.run())

    async def stop() -> None:
        unsubscribe()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await publisher.close()

    return stop


CURSOR_KIND = "event"


def event_cursor(event_id: int) -> str:
    """The opaque cursor a subscriber hands back (`after`) to get what it missed."""
    return encode_cursor(CURSOR_KIND, str(event_id))


def cursor_event_id(cursor: str, argument: str = "after") -> int:
    (raw_id,) = decode_cursor(cursor, CURSOR_KIND, 1, argument)
    return cursor_row_id(raw_id, argument, maximum=MAX_BIG_ROW_ID)
