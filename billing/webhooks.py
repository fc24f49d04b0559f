"""Stripe webhooks: verified, recorded by event id (a redelivery does nothing), statuses only move on.

Events arrive late, twice and out of order. Each handler derives the new state from the event's object and
lets the ledger refuse anything that would move a settled entry; one database transaction per event, so a
failure rolls back the event record too and Stripe's redelivery tries again.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import ledger, payment_methods, payments
from billing.db import SessionFactory, unit_of_work
from billing.stripe_gateway import StripeGateway, WebhookEvent, card_from_stripe, charge_result
from models import StripeEvent, Transaction, TransactionKind, TransactionStatus

logger = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, StripeGateway, dict[str, Any]], Awaitable[None]]


async def handle(
    factory: SessionFactory, gateway: StripeGateway, payload: bytes, signature: str | None
) -> bool:
    """Verify and apply one delivery; False when the event had been applied before.

    Raises InvalidWebhook (bad signature, stale timestamp, not an event) before anything is written.
    """
    event = gateway.verify_webhook(payload, signature)
    try:
        async with unit_of_work(factory) as session:
            if await session.get(StripeEvent, event.id) is not None:
                return False
            session.add(StripeEvent(id=event.id, type=event.type))
            await session.flush()  # a concurrent delivery of the same event stops here (primary key)
            await _apply(session, gateway, event)
    except IntegrityError:
        async with unit_of_work(factory) as session:
            if await session.get(StripeEvent, event.id) is None:
                raise  # some other conflict: fail, and let Stripe deliver again
        logger.info("stripe event %s: delivered concurrently, applied once", event.id)
        return False
    return True


async def _apply(session: AsyncSession, gateway: StripeGateway, event: WebhookEvent) -> None:
    handler = _HANDLERS.get(event.type)
    if handler is None:
        logger.debug("stripe event %s (%s): acknowledged", event.id, event.type)
        return
    await handler(session, gateway, event.object)


def _metadata(obj: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (obj.get("metadata") or {}).items()}


async def _payment_intent(session: AsyncSession, _gateway: StripeGateway, intent: dict[str, Any]) -> None:
    entry = await payments.entry_for_intent(session, intent["id"], _metadata(intent))
    if entry is None or entry.id is None:
        return  # not a payment of ours
    await payments.apply_charge_result(session, entry.id, charge_result(intent, off_session=False))


async def _payment_method_attached(
    session: AsyncSession, _gateway: StripeGateway, method: dict[str, Any]
) -> None:
    if method.get("card") is not None:
        await payment_methods.sync_attached(session, card_from_stripe(method))


async def _payment_method_detached(
    session: AsyncSession, _gateway: StripeGateway, method: dict[str, Any]
) -> None:
    await payment_methods.sync_detached(session, method["id"])


async def _setup_intent_succeeded(
    session: AsyncSession, gateway: StripeGateway, intent: dict[str, Any]
) -> None:
    method_id = intent.get("payment_method")
    if isinstance(method_id, str):
        await payment_methods.sync_attached(session, await gateway.retrieve_card(method_id))


async def _charge_refunded(session: AsyncSession, _gateway: StripeGateway, charge: dict[str, Any]) -> None:
    """A refund entry for the newly refunded part only.

    `amount_refunded` is cumulative, and newer API versions no longer embed the refunds list in the charge, so
    each step is keyed by (charge, cumulative amount): a redelivery or an older event adds nothing.
    """
    intent_id = charge.get("payment_intent")
    if not isinstance(intent_id, str):
        return
    original = await payments.entry_for_intent(session, intent_id, _metadata(charge))
    if original is None or original.status != TransactionStatus.SUCCEEDED:
        return
    await ledger.lock_account(session, original.account_id)  # the sum below must not race another refund
    refunded_so_far = -int(
        (
            await session.exec(
                select(func.coalesce(func.sum(Transaction.amount_minor), 0)).where(
                    Transaction.reverses_id == original.id, Transaction.kind == TransactionKind.REFUND
                )
            )
        ).one()
    )
    total = min(int(charge["amount_refunded"]), original.amount_minor)
    if total <= refunded_so_far:
        return
    await ledger.reverse(
        session,
        original,
        kind=TransactionKind.REFUND,
        amount_minor=-(total - refunded_so_far),
        description=f"Refund of {original.description}",
        idempotency_key=f"refund:{charge['id']}:{total}",
    )


_HANDLERS: dict[str, Handler] = {
    "payment_intent.succeeded": _payment_intent,
    "payment_intent.payment_failed": _payment_intent,
    "payment_intent.canceled": _payment_intent,
    "payment_method.attached": _payment_method_attached,
    "payment_method.updated": _payment_method_attached,
    "payment_method.detached": _payment_method_detached,
    "setup_intent.succeeded": _setup_intent_succeeded,
    "charge.refunded": _charge_refunded,
}
