"""Live events: each process tells its open subscriptions about committed domain events within a moment of the
commit, whichever process committed.

A signal only names the accounts that changed; it wakes the feeds that follow one of them, and each woken feed
reads what it has not seen yet from the `domain_event` table (`events.events_since` past its own cursor). The
table is the one source of what happened and in which order (ids follow commit order, see billing/events.py),
so a signal that arrives twice, late, or from two sources (this process's commit is also NOTIFYed back to its
own LISTEN connection) delivers nothing twice: a feed's cursor only moves forward. A client that reconnects
gives the last id it saw and its feed starts from there.

Signals come from:
- this process's commits (`events.subscribe`), on every database;
- on PostgreSQL, `LISTEN billing_domain_events` on one connection of its own per process (never a pooled one:
  it stays open for the process's life), which hears every process's commits. When that connection is lost
  it is opened again and every feed is woken, so nothing committed meanwhile waits for the next signal.
SQLite is one process (`make run`): its own commits are all there is.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Collection, Coroutine, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import asyncpg
from sqlalchemy import func
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from billing import events
from billing.auth import Principal
from billing.db import DatabaseBusy, SessionFactory, read_session
from billing.events import StoredEvent
from billing.pagination import MAX_BIG_ROW_ID, cursor_row_id, decode_cursor, encode_cursor
from models import Account, DomainEventRow, PrincipalKind

logger = logging.getLogger(__name__)

# Events read per query: a feed that finds a full batch reads again at once.
BATCH = 100
# A feed whose read was shed (no connection free) tries again after this long.
BUSY_RETRY_SECONDS = 1.0
# The LISTEN connection is opened again this long after it was lost (or could not be opened).
RELISTEN_SECONDS = 1.0


class Feed:
    """One subscription's view of the events of some accounts, from a cursor on."""

    def __init__(self, sessions: SessionFactory, accounts: frozenset[int], cursor: int) -> None:
        self.accounts = accounts
        self.cursor = cursor
        self._sessions = sessions
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
                    found = await events.events_since(session, self.cursor, self.accounts, limit=BATCH)
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
        """Wake the feeds following any of these accounts (None: every feed)."""
        for feed in self._feeds:
            if account_ids is None or not feed.accounts.isdisjoint(account_ids):
                feed.wake()

    def committed(self, stored: Sequence[StoredEvent]) -> None:
        """An `events.subscribe` listener: this process committed these events."""
        self.wake({event.account_id for event in stored})

    @asynccontextmanager
    async def feed(self, accounts: frozenset[int], after: int | None) -> AsyncIterator[Feed]:
        """A feed of these accounts' events after `after`, or (None) of those committed from now on."""
        feed = Feed(self._sessions, accounts, after or 0)
        # Registered before "now" is read: an event committed in between is either before the cursor or
        # signalled to this feed, never both missed.
        self._feeds.add(feed)
        try:
            if after is None:
                async with read_session(self._sessions) as session:
                    latest = (await session.exec(select(func.max(col(DomainEventRow.id))))).one()
                feed.cursor = latest or 0
            yield feed
        finally:
            self._feeds.discard(feed)


async def followed_accounts(session_factory: SessionFactory, principal: Principal) -> frozenset[int]:
    """Every account a partner manages (what a subscription without an account id follows for a partner)."""
    if principal.kind is not PrincipalKind.PARTNER:
        raise ValueError("only partners follow all of their accounts")
    async with read_session(session_factory) as session:
        statement = select(Account.id).where(principal.account_filter(col(Account.id)))
        return frozenset(account_id for account_id in (await session.exec(statement)).all() if account_id)


def _notified_accounts(payload: str) -> list[int] | None:
    """The accounts a NOTIFY names; None ("*", or a payload we cannot read) means every account."""
    try:
        return [int(part) for part in payload.split(",")] if payload != "*" else None
    except ValueError:
        return None


async def listen_postgres(database_url: str, hub: EventHub, stop: asyncio.Event) -> None:
    """LISTEN for every process's commits until `stop` is set, on a connection of its own."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)

    def notified(_connection: object, _pid: int, _channel: str, payload: str) -> None:
        hub.wake(_notified_accounts(payload))

    while not stop.is_set():
        lost = asyncio.Event()
        try:
            connection = await asyncpg.connect(dsn, timeout=10)
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            logger.warning("cannot LISTEN for domain events (%s); retrying", error)
        else:
            connection.add_termination_listener(partial(_lost, lost))
            try:
                await connection.add_listener(events.CHANNEL, notified)
                # Whatever committed while no connection listened is read now.
                hub.wake(None)
                await _first(stop.wait(), lost.wait())
            except (OSError, asyncpg.PostgresError) as error:
                logger.warning("LISTEN for domain events failed (%s); listening again", error)
            finally:
                if not connection.is_closed():
                    await connection.close(timeout=5)
        if not stop.is_set():
            await _first(stop.wait(), asyncio.sleep(RELISTEN_SECONDS))


def _lost(lost: asyncio.Event, _connection: object) -> None:
    lost.set()


async def _first(*waits: Coroutine[Any, Any, object]) -> None:
    """Wait until the first of these finishes; cancel the others."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


CURSOR_KIND = "event"


def event_cursor(event_id: int) -> str:
    """The opaque cursor a subscriber hands back (`after`) to get what it missed."""
    return encode_cursor(CURSOR_KIND, str(event_id))


def cursor_event_id(cursor: str, argument: str = "after") -> int:
    (raw_id,) = decode_cursor(cursor, CURSOR_KIND, 1, argument)
    return cursor_row_id(raw_id, argument, maximum=MAX_BIG_ROW_ID)
