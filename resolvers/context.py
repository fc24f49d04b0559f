"""The per-request context: the caller, one database session, and the request's dataloaders."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import strawberry
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from billing.auth import Principal
from billing.config import Settings
from billing.db import SessionFactory
from billing.stripe_gateway import PaymentProviderUnavailable, StripeGateway

LoaderT = TypeVar("LoaderT")


@dataclass
class Context:
    request: Request
    response: Response | None
    settings: Settings
    principal: Principal
    session_factory: SessionFactory
    session: AsyncSession
    # None when no Stripe key is configured: payment mutations then answer "payment provider unavailable".
    stripe_gateway: StripeGateway | None = None
    # Set when a resolver failed unexpectedly: the request's unit of work is then rolled back.
    unexpected_error: bool = False
    # Sibling fields resolve concurrently, but one session runs one statement at a time.
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _loaders: dict[Callable[..., Any], Any] = field(default_factory=dict)

    @asynccontextmanager
    async def db(self) -> AsyncIterator[AsyncSession]:
        """The request's session, held exclusively for the block."""
        async with self._lock:
            yield self.session

    @property
    def stripe(self) -> StripeGateway:
        if self.stripe_gateway is None:
            raise PaymentProviderUnavailable("payments are not configured on this server (no Stripe key)")
        return self.stripe_gateway

    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[AsyncSession]:
        """The request's session for one mutation, in a savepoint: if the block raises, what it wrote is undone
        (a rejected input saves nothing) while earlier mutations of the same request stand."""
        async with self._lock, self.session.begin_nested():
            yield self.session

    def loader(self, cls: Callable[["Context"], LoaderT]) -> LoaderT:
        """This request's instance of a dataloader class, made on first use (aiodataloader binds to the loop)."""
        if cls not in self._loaders:
            self._loaders[cls] = cls(self)
        instance: LoaderT = self._loaders[cls]
        return instance


Info = strawberry.Info[Context, None]
