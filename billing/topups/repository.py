"""Top-ups and auto-recharges as payments: found by their Stripe PaymentIntent, linked to it, reconciled.

Settling an auto-recharge's entry finds its recharge here (by the entry, under a row lock), so every
settlement path (addFunds, the worker, webhooks, reconciliation) reaches it the same way.
"""

from datetime import datetime

from sqlalchemy import ColumnElement
from sqlmodel import col, exists, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.scope import Scope
from models import (
    Account,
    Recharge,
    RechargeStatus,
    Transaction,
    TransactionKind,
    TransactionStatus,
)

PAYMENTS = (TransactionKind.TOP_UP, TransactionKind.AUTO_RECHARGE)
# A recharge the worker is charging (or about to): its entry is the worker's to settle.
IN_FLIGHT = (RechargeStatus.SCHEDULED, RechargeStatus.PROCESSING)


class TopUpRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    async def paid_by(self, payment_intent_id: str) -> Transaction | None:
        """The entry whose stored PaymentIntent this is."""
        statement = select(Transaction).where(
            Transaction.stripe_payment_intent_id == payment_intent_id,
            self.scope.accounts(col(Transaction.account_id)),
        )
        return (await self.session.exec(statement)).first()

    async def link_intent(self, entry_id: int, payment_intent_id: str) -> None:
        """Record the PaymentIntent of an entry that has none yet (it moves no money)."""
        await self.session.exec(
            update(Transaction)
            .where(
                col(Transaction.id) == entry_id,
                col(Transaction.stripe_payment_intent_id).is_(None),
                self.scope.accounts(col(Transaction.account_id)),
            )
            .values(stripe_payment_intent_id=payment_intent_id)
        )

    async def reread(self, entry: Transaction) -> None:
        await self.session.refresh(entry)

    async def stale_pending(self, created_before: datetime) -> list[tuple[Transaction, str | None]]:
        """Top-ups and auto-recharges pending since before `created_before`, with their Stripe customer."""
        return await self._payments(
            Transaction.status == TransactionStatus.PENDING, col(Transaction.created_at) < created_before
        )

    async def failed_without_intent(
        self, failure_code: str, settled_since: datetime
    ) -> list[tuple[Transaction, str | None]]:
        """Top-ups and auto-recharges failed with `failure_code` since `settled_since` that no PaymentIntent
        is linked to, with their Stripe customer."""
        return await self._payments(
            Transaction.status == TransactionStatus.FAILED,
            Transaction.failure_code == failure_code,
            col(Transaction.stripe_payment_intent_id).is_(None),
            col(Transaction.settled_at) >= settled_since,
        )

    async def _payments(
        self, *conditions: ColumnElement[bool] | bool
    ) -> list[tuple[Transaction, str | None]]:
        # A recharge in flight is the worker's: it asks Stripe itself before charging again, and settling its
        # entry meanwhile would only turn its success into a late one.
        worked_on = exists().where(
            col(Recharge.transaction_id) == col(Transaction.id),
            col(Recharge.status).in_(IN_FLIGHT),
        )
        statement = (
            select(Transaction, Account.stripe_customer_id)
            .join(Account, col(Account.id) == col(Transaction.account_id))
            .where(
                col(Transaction.kind).in_(PAYMENTS),
                ~worked_on,
                self.scope.accounts(col(Transaction.account_id)),
                *conditions,
            )
            .order_by(col(Transaction.id))
        )
        return [(entry, customer) for entry, customer in (await self.session.exec(statement)).all()]

    async def recharge_of(self, entry_id: int) -> Recharge | None:
        """The recharge an auto-recharge entry pays for, locked until the transaction ends, freshly read."""
        statement = (
            select(Recharge)
            .where(Recharge.transaction_id == entry_id, self.scope.accounts(col(Recharge.account_id)))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.exec(statement)).first()
