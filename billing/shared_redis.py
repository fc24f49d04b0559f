"""The Redis that gateways and workers share when REDIS_URL is set (live updates and subscription connection
counts; the failed-authentication counts have their own client, billing/keys/throttle.py): clients, and the
names of what they share, under REDIS_NAMESPACE."""

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from billing.config import Settings

# A Redis that does not answer must not hold a WebSocket's `connection_init` (or a commit's signal) for long.
TIMEOUT_SECONDS = 2.0


def name(settings: Settings, *parts: str) -> str:
    """A key or channel of this deployment: deployments sharing one Redis set different REDIS_NAMESPACEs."""
    return ":".join((settings.redis_namespace, *parts))


def client(settings: Settings, purpose: str) -> Redis:
    """A client of REDIS_URL, named after its purpose (as `CLIENT LIST` shows it). It never retries by itself:
    its callers log a failure and try again, so a pub/sub connection that dropped is noticed (and what was
    missed meanwhile read), never re-opened silently by the library."""
    if settings.redis_url is None:
        raise ValueError("REDIS_URL is not set")
    return Redis.from_url(
        settings.redis_url,
        client_name=name(settings, purpose),
        retry=Retry(NoBackoff(), 0),
        socket_timeout=TIMEOUT_SECONDS,
        socket_connect_timeout=TIMEOUT_SECONDS,
        socket_keepalive=True,
        decode_responses=True,
    )
