"""The local Redis that tests sharing state between gateways use, when it runs."""

import pytest
import redis.asyncio
import redis.exceptions

REDIS_URL = "redis://127.0.0.1:6379/0"


async def redis_reachable() -> None:
    client = redis.asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.ping()
    except redis.exceptions.ConnectionError as error:
        pytest.skip(f"Redis at {REDIS_URL} unreachable: {error}")
    finally:
        await client.aclose()
