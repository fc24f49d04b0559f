"""Open subscription connections per API key, held to SUBSCRIPTION_CONNECTIONS_PER_KEY: counted in this process,
or with REDIS_URL across every gateway sharing that Redis.

In Redis a key's open connections are a sorted set of connection ids, each scored by when its entry expires (by
Redis's clock, so the gateways' clocks need not agree). Taking a place drops the expired entries and adds one
only while fewer than the limit remain, in one script, so two gateways never both take the last place. The
gateway holding a connection renews its entry every third of SUBSCRIPTION_CONNECTION_TTL_SECONDS and removes it
when the connection closes; a gateway that was killed renews nothing, so its connections stop counting within
the TTL.
"""

import logging
from collections import Counter
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from billing import shared_redis
from billing.config import Settings

logger = logging.getLogger(__name__)

# KEYS[1]: the key's set. ARGV: connection id, TTL in milliseconds, limit (0: a renewal, which always keeps its
# place). Returns 1 when the connection holds a place, 0 when the key has no place left.
_HOLD = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local limit = tonumber(ARGV[3])
if limit > 0 and not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


class CountUnavailable(Exception):
    """The shared count could not be reached: the connection cannot be admitted now."""


class SubscriptionConnections(Protocol):
    # How often a held place must be renewed; None: never.
    renew_seconds: float | None

    async def take(self, api_key_id: int, connection_id: str) -> bool:
        """Count the connection against its key's limit; False (and not counted) when the key has none left."""
        ...

    async def renew(self, api_key_id: int, connection_id: str) -> None: ...

    async def release(self, api_key_id: int, connection_id: str) -> None: ...

    async def aclose(self) -> None: ...


class InProcess:
    renew_seconds: float | None = None

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open: Counter[int] = Counter()

    async def take(self, api_key_id: int, connection_id: str) -> bool:
        if self._open[api_key_id] >= self._limit:
            return False
        self._open[api_key_id] += 1
        return True

    async def renew(self, api_key_id: int, connection_id: str) -> None:
        return None

    async def release(self, api_key_id: int, connection_id: str) -> None:
        self._open[api_key_id] -= 1
        if self._open[api_key_id] <= 0:
            del self._open[api_key_id]

    async def aclose(self) -> None:
        return None


class InRedis:
    def __init__(self, client: Redis, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._limit = settings.subscription_connections_per_key
        self._ttl_ms = max(1, round(settings.subscription_connection_ttl_seconds * 1000))
        self.renew_seconds: float | None = settings.subscription_connection_ttl_seconds / 3
        self._hold = client.register_script(_HOLD)

    def _key(self, api_key_id: int) -> str:
        return shared_redis.name(self._settings, "subscription-connections", str(api_key_id))

    async def take(self, api_key_id: int, connection_id: str) -> bool:
        try:
            held = await self._hold(
                keys=[self._key(api_key_id)], args=[connection_id, self._ttl_ms, self._limit]
            )
        except RedisError as error:
            logger.warning("subscription connection counts unavailable (%s)", error)
            raise CountUnavailable from error
        return bool(held)

    async def renew(self, api_key_id: int, connection_id: str) -> None:
        # A renewal that fails leaves the connection open: the next one puts its entry back.
        try:
            await self._hold(keys=[self._key(api_key_id)], args=[connection_id, self._ttl_ms, 0])
        except RedisError as error:
            logger.warning("cannot renew a subscription connection's count (%s)", error)

    async def release(self, api_key_id: int, connection_id: str) -> None:
        try:
            await self._client.zrem(self._key(api_key_id), connection_id)
        except RedisError as error:  # its entry expires within the TTL
            logger.warning("cannot release a subscription connection's count (%s)", error)

    async def aclose(self) -> None:
        await self._client.aclose()


def from_settings(settings: Settings) -> SubscriptionConnections:
    if settings.redis_url:
        return InRedis(shared_redis.client(settings, "subscription-connections"), settings)
    return InProcess(settings.subscription_connections_per_key)
