"""The per-operation context: the caller, a session factory, and the operation's dataloaders.

Nothing here depends on HTTP, so the same resolvers serve a request and a websocket subscription. `read()` and
`atomic()` use one connection at a time (a lock), so an operation never needs two. A mutation borrows one per
block, never keeping one while it waits on Stripe; a query (which never waits on the network) asks for
`share_reads()`, and its reads then share one read session (`reads`), opened by the first (or by the request's
key check, which hands it on) and closed by `finish()`.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import strawberry
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.config import Settings
from billing.db import SessionFactory, SharedRead, read_session, unit_of_work
from billing.keys.service import Principal
from billing.stripe_gateway import PaymentProviderUnavailable, StripeGateway

LoaderT = TypeVar("LoaderT")
T = TypeVar("T")
# How long an answered operation waits for a read still running before cancelling it.
FINISH_WAIT_SECONDS = 1.0


class OperationFinished(Exception):
    """A field still resolving after its operation answered (its result would be thrown away)."""


@dataclass
class Context:
    settings: Settings
    principal: Principal
    session_factory: SessionFactory
    # None when no Stripe key is configured: payment mutations then answer "payment provider unavailable".
    stripe_gateway: StripeGateway | None = None
    # Set when the database shed this operation (pool exhausted, SQLite write lock not granted in time):
    # the HTTP edge answers 503 with Retry-After instead of a GraphQL error.
    database_busy: bool = False
    # Sibling fields resolve concurrently; the lock keeps them to one connection at a time.
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _finished: bool = False
    _reads: set["asyncio.Future[Any]"] = field(default_factory=set)
    _loaders: dict[Callable[..., Any], Any] = field(default_factory=dict)
    # The read session a query's reads share (a registered query's: the one its key check opened). Given back
    # before a read or a unit of work of the operation's own, so the operation holds one connection at a time.
    reads: SharedRead = field(kw_only=True)
    _share_reads: bool = False

    def share_reads(self) -> None:
        """For a query: its reads share one session (opening and closing one per read cost a tenth of a
        request's CPU). Only for operations that never wait on the network while reading."""
        self._share_reads = True

    async def read(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """`work` in a read-only session of its own.

        Shielded from cancellation: when a non-null field fails, graphql-core cancels its siblings, and a
        statement cancelled midway costs its connection. The work finishes (and `finish` waits for it).
        """
        task = asyncio.ensure_future(self._read(work))
        self._reads.add(task)
        task.add_done_callback(self._read_done)
        return await asyncio.shield(task)

    def _read_done(self, task: "asyncio.Future[Any]") -> None:
        self._reads.discard(task)
        if not task.cancelled():
            task.exception()  # abandoned by a cancelled field, its outcome is nobody's

    async def _read(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with self._lock:
            self._check_open()
            shared = self.reads
            if not self._share_reads:
                await shared.close()
                async with read_session(self.session_factory) as session:
                    return await work(session)
            return await shared.run(work)

    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[AsyncSession]:
        """One mutation's unit of work: committed when the block succeeds, undone when it raises; earlier
        mutations of the same request stand. Never await the network inside it."""
        async with self._lock:
            self._check_open()
            await self.reads.close()
            async with unit_of_work(self.session_factory) as session:
                yield session

    async def finish(self) -> None:
        """End the operation: refuse new database work, give reads still running a moment to end, then cancel
        them. Execution returns as soon as a non-null field fails, while its siblings may still be resolving;
        a read stuck past the request's time budget is not waited for."""
        self._finished = True
        running = set(self._reads)
        if running:
            _, late = await asyncio.wait(running, timeout=FINISH_WAIT_SECONDS)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        await self.reads.close()

    def _check_open(self) -> None:
        if self._finished:
            raise OperationFinished("the operation already answered")

    @property
    def stripe(self) -> StripeGateway:
        if self.stripe_gateway is None:
            raise PaymentProviderUnavailable("payments are not configured on this server (no Stripe key)")
        return self.stripe_gateway

    def forget_loaded(self) -> None:
        """Drop what this operation's dataloaders hold: a subscription resolves each event afresh."""
        self._loaders.clear()

    def loader(self, cls: Callable[["Context"], LoaderT]) -> LoaderT:
        """This operation's instance of a dataloader class, made on first use (aiodataloader binds to the loop)."""
        if cls not in self._loaders:
            self._loaders[cls] = cls(self)
        instance: LoaderT = self._loaders[cls]
        return instance


Info = strawberry.Info[Context, None]
