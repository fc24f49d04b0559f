"""A GraphQL client like a careful frontend or reporter behind a load balancer: on a dropped connection or a
503 it sends the SAME request (same idempotency key, same batch) to the next gateway, honouring Retry-After.

Every attempt is recorded, so a test can assert afterwards on everything the gateways answered.
"""

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.graphql_client import post_graphql

MAX_RETRY_AFTER_SECONDS = 5.0


@dataclass(frozen=True)
class Attempt:
    operation: str
    gateway: str
    status: int | None  # None: no HTTP answer (connection refused or dropped)
    retry_after: str | None
    problem: str | None  # the transport error, or the GraphQL errors of an answer


@dataclass
class FailoverClient:
    gateways: list[str]  # base URLs; the test swaps in a restarted gateway's
    http: httpx.AsyncClient
    deadline_seconds: float = 45.0
    attempts: list[Attempt] = field(default_factory=list)
    _turns: int = 0  # spreads first attempts over the gateways, like a round-robin balancer

    async def execute(
        self, operation: str, key: str, query: str, variables: Mapping[str, object]
    ) -> tuple[int, dict[str, Any]]:
        """The first answer that is not a 5xx or a dropped connection: (status, JSON body)."""
        return await asyncio.wait_for(
            self._until_answered(operation, key, query, variables), self.deadline_seconds
        )

    async def _until_answered(
        self, operation: str, key: str, query: str, variables: Mapping[str, object]
    ) -> tuple[int, dict[str, Any]]:
        start = self._turns
        self._turns += 1
        dropped_in_a_row = 0
        for offset in itertools.count():
            gateway = self.gateways[(start + offset) % len(self.gateways)]
            try:
                response = await post_graphql(self.http, key, query, variables, url=f"{gateway}/graphql")
            except httpx.TransportError as error:
                self.attempts.append(Attempt(operation, gateway, None, None, type(error).__name__))
                dropped_in_a_row += 1
                if dropped_in_a_row % len(self.gateways) == 0:
                    await asyncio.sleep(0.2)  # back off: no gateway answered this round
                continue
            dropped_in_a_row = 0
            body: dict[str, Any] = response.json()
            retry_after = response.headers.get("retry-after")
            errors = body.get("errors")
            self.attempts.append(
                Attempt(
                    operation, gateway, response.status_code, retry_after, str(errors) if errors else None
                )
            )
            if response.status_code != 503 or retry_after is None:
                return response.status_code, body  # an answer, or a failure the test reports
            await asyncio.sleep(min(float(retry_after), MAX_RETRY_AFTER_SECONDS))  # as the gateway asked
        raise AssertionError("unreachable")  # itertools.count never ends; wait_for bounds the loop
