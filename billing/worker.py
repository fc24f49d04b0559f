"""The worker, inside the gateway (`EMBEDDED_WORKER`) or alone (`python -m cli worker`): two loops side by side.

One charges due auto-recharges and reconciles payments (billing/auto_recharge/engine.py), the other sends outgoing
webhooks (billing/outgoing_webhooks/delivery.py). Apart, neither waits for the other: a receiver slow to answer
never delays a recharge, and a charge slow at Stripe never delays a delivery. Several workers share each loop's
work through its claims and leases.
"""

import asyncio

from billing.auto_recharge import engine as recharge_engine
from billing.config import Settings
from billing.db import SessionFactory
from billing.outgoing_webhooks import delivery as webhooks_outgoing_delivery
from billing.stripe_gateway import StripeGateway


async def run(
    factory: SessionFactory, gateway: StripeGateway, *, stop_event: asyncio.Event, settings: Settings
) -> None:
    """Both loops until `stop_event` is set (each survives its own failures; should one end by an error, the
    other is cancelled and the error raised)."""
    async with asyncio.TaskGroup() as loops:
        loops.create_task(
            recharge_engine.run_worker(factory, gateway, stop_event=stop_event, settings=settings)
        )
        loops.create_task(webhooks_outgoing_delivery.run_worker(factory, settings, stop_event=stop_event))
