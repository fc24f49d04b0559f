"""Failed authentication, counted per key prefix and per client address, refused beyond a limit.

What is counted: only failures (a key that is malformed, unknown, wrong or revoked). A request without any key
is a 401 that guesses nothing and is not counted.

A right key is never refused. The secret is checked first (the constant-time compare in `auth.authenticate`),
and only a failed check is counted and, over a limit, answered 429 instead of 401. The prefix of a key is not
secret (it is shown in lists and logs), so refusing the prefix itself once it is over its limit would let
anyone lock the key's owner out by sending wrong secrets under it; the same holds for an address shared by
many clients (an office behind NAT, every client behind a proxy that is not trusted). What keeps a key from
being guessed is its 256-bit secret, not this limit: a wrong guess is refused either way, 401 or 429. The
limit bounds what failing clients get: a 429 with `Retry-After` that a misconfigured client backs off on,
and a count operators can watch.

Counts live in this process by default; with `REDIS_URL` every gateway shares them. A count that cannot be
reached (Redis down) refuses nothing: the failure is still a 401, and the outage is logged.
"""

import logging
import math
import time
from dataclasses import dataclass

import limits
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from billing.config import Settings

logger = logging.getLogger(__name__)

NAMESPACE = "auth-failure"
# A Redis that does not answer must not hold a request for long.
REDIS_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True)
class Refusal:
    """Too many failures: answer 429 and tell the client when a new attempt may count again."""

    retry_after_seconds: int


class AuthThrottle:
    def __init__(
        self, storage: Storage, *, per_key_prefix: limits.RateLimitItem, per_address: limits.RateLimitItem
    ) -> None:
        # A moving window: a client over the limit may try again as its oldest failure ages out, never
        # in a burst at a window boundary.
        self._limiter = MovingWindowRateLimiter(storage)
        self._per_key_prefix = per_key_prefix
        self._per_address = per_address

    @classmethod
    def from_settings(cls, settings: Settings) -> "AuthThrottle":
        storage: Storage
        if settings.redis_url:
            storage = RedisStorage(
                f"async+{settings.redis_url}",
                implementation="redispy",
                wrap_exceptions=True,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
        else:
            storage = MemoryStorage(wrap_exceptions=True)
        return cls(
            storage,
            per_key_prefix=limits.parse(settings.auth_failures_per_key_prefix),
            per_address=limits.parse(settings.auth_failures_per_address),
        )

    async def failed(self, *, key_prefix: str | None, address: str | None) -> Refusal | None:
        """Count one failed authentication; the refusal when its prefix or its address is over the limit."""
        counters = [(self._per_address, ("address", address or "unknown"))]
        if key_prefix is not None:  # a malformed key names no prefix: it counts for its address only
            counters.append((self._per_key_prefix, ("key-prefix", key_prefix)))
        try:
            over = [
                (limit, identifiers)
                for limit, identifiers in counters
                if not await self._limiter.hit(limit, NAMESPACE, *identifiers)
            ]
            if not over:
                return None
            resets = [
                (await self._limiter.get_window_stats(limit, NAMESPACE, *identifiers)).reset_time
                for limit, identifiers in over
            ]
        except StorageError as error:
            logger.warning("failed-authentication counts unavailable, refusing nothing: %s", error)
            return None
        return Refusal(retry_after_seconds=max(1, math.ceil(max(resets) - time.time())))
