"""Failed authentication is limited per key prefix and per client address; the right key always works."""

import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.config import Environment, Settings
from billing.db import SessionFactory
from tests.support.factories import create_account, member_key
from tests.support.gateway import open_gateway
from tests.support.graphql_client import post_graphql
from tests.support.redis_server import REDIS_URL, redis_reachable

QUERY = {"query": "{ account { name } }"}

Gateway = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def throttled_settings(**overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "environment": Environment.TEST,
        "embedded_worker": False,
        "auth_failures_per_key_prefix": "10/minute",
        "auth_failures_per_address": "50/minute",
    }
    return Settings(**(fields | overrides))


@pytest.fixture
def gateway(session_factory: SessionFactory) -> Gateway:
    """A gateway (an app of its own, so counts of its own unless they live in Redis) and a client of it."""

    @asynccontextmanager
    async def serve(
        settings: Settings | None = None, *, address: str = "127.0.0.1"
    ) -> AsyncIterator[httpx.AsyncClient]:
        async with open_gateway(
            settings or throttled_settings(), session_factory, caller=(address, 50_000)
        ) as client:
            yield client

    return serve


def wrong_secret(key: str) -> str:
    """The same prefix as `key` ("bk_" and 12 hex digits), another secret."""
    return f"{key[:15]}_{secrets.token_urlsafe(32)}"


def unknown_key() -> str:
    return f"bk_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


async def member(session: AsyncSession) -> str:
    return await member_key(session, await create_account(session, name="Throttled GmbH"))


async def test_200_wrong_secrets_on_one_prefix_are_refused_with_429_and_the_owner_still_gets_in(
    session: AsyncSession, gateway: Gateway
) -> None:
    key = await member(session)
    assert wrong_secret(key)[:15] == key[:15] and wrong_secret(key) != key
    async with gateway() as client:
        statuses = []
        for _ in range(200):
            response = await post_graphql(client, wrong_secret(key), QUERY)
            statuses.append(response.status_code)
            if response.status_code == 429:
                refused = response
        assert statuses == [401] * 10 + [429] * 190

        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        error = refused.json()["errors"][0]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert error["extensions"]["retryAfter"] == int(refused.headers["Retry-After"])
        assert "data" not in refused.json()

        owner = await post_graphql(client, key, QUERY)
        assert owner.status_code == 200, owner.text
        assert owner.json()["data"]["account"]["name"] == "Throttled GmbH"


async def test_failures_are_counted_per_client_address_and_x_forwarded_for_is_not_believed(
    session: AsyncSession, gateway: Gateway
) -> None:
    key = await member(session)
    settings = throttled_settings(auth_failures_per_address="5/minute")
    async with gateway(settings, address="192.0.2.1") as attacker:
        # Another prefix each time, and a made-up forwarded address each time: one client all the same.
        statuses = [
            (
                await post_graphql(
                    attacker, unknown_key(), QUERY, headers={"X-Forwarded-For": f"198.51.100.{n}"}
                )
            ).status_code
            for n in range(8)
        ]
        assert statuses == [401] * 5 + [429] * 3
        # Malformed keys name no prefix but still count for their address.
        assert (await post_graphql(attacker, "not-a-key", QUERY)).status_code == 429
        assert (await post_graphql(attacker, key, QUERY)).status_code == 200


async def test_another_address_is_not_refused_for_the_first_ones_failures(
    session: AsyncSession, gateway: Gateway
) -> None:
    settings = throttled_settings(auth_failures_per_address="3/minute")
    async with gateway(settings, address="192.0.2.1") as first:
        assert [(await post_graphql(first, unknown_key(), QUERY)).status_code for _ in range(4)] == [
            401
        ] * 3 + [429]
        async with gateway(settings, address="192.0.2.2") as second:
            assert (await post_graphql(second, unknown_key(), QUERY)).status_code == 401


async def test_metrics_share_the_limit(session: AsyncSession, gateway: Gateway) -> None:
    key = await member(session)
    async with gateway() as client:
        for _ in range(10):
            headers = {"Authorization": f"Bearer {wrong_secret(key)}"}
            assert (await client.get("/metrics", headers=headers)).status_code == 401
        assert (await post_graphql(client, wrong_secret(key), QUERY)).status_code == 429
        response = await client.get("/metrics", headers={"Authorization": f"Bearer {wrong_secret(key)}"})
        assert response.status_code == 429 and "Retry-After" in response.headers


async def test_a_missing_key_is_a_401_and_not_counted(session: AsyncSession, gateway: Gateway) -> None:
    async with gateway(throttled_settings(auth_failures_per_address="2/minute")) as client:
        assert [(await post_graphql(client, None, QUERY)).status_code for _ in range(5)] == [401] * 5
        assert (await post_graphql(client, unknown_key(), QUERY)).status_code == 401


async def test_gateways_sharing_redis_share_one_count(session: AsyncSession, gateway: Gateway) -> None:
    await redis_reachable()
    key = await member(session)
    # An address of this test's own: other runs on the same Redis never add to its count.
    address = f"test-{uuid.uuid4()}"
    settings = throttled_settings(redis_url=REDIS_URL, auth_failures_per_address="6/minute")
    async with gateway(settings, address=address) as one, gateway(settings, address=address) as two:
        statuses = [
            (await post_graphql(client, unknown_key(), QUERY)).status_code
            for client in (one, two, one, two, one, two)
        ]
        assert statuses == [401] * 6
        assert (await post_graphql(one, unknown_key(), QUERY)).status_code == 429
        assert (await post_graphql(two, unknown_key(), QUERY)).status_code == 429
        assert (await post_graphql(two, key, QUERY)).status_code == 200


async def test_without_redis_failures_are_401s_and_nothing_is_refused(
    session: AsyncSession, gateway: Gateway
) -> None:
    """Port 9 (discard) on loopback has no Redis: the count is unavailable, and that refuses no one."""
    key = await member(session)
    settings = throttled_settings(redis_url="redis://127.0.0.1:9/0", auth_failures_per_address="1/minute")
    async with gateway(settings) as client:
        assert [(await post_graphql(client, unknown_key(), QUERY)).status_code for _ in range(3)] == [401] * 3
        assert (await post_graphql(client, key, QUERY)).status_code == 200
