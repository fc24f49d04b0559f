"""Saved cards (the local mirror of Stripe's) and the account's Stripe customer id."""

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

import sqlalchemy
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.keys.repository import Reach, reach_rule
from billing.scope import Scope
from billing.sql import among_parameter, columns
from models import Account, PaymentMethod


class PaymentMethodRow(NamedTuple):
    """A saved card as read for showing it: `PaymentMethod`'s columns, without an ORM entity."""

    id: int
    account_id: int
    stripe_payment_method_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    is_default: bool
    created_at: datetime


class PaymentMethodRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    async def of_account(self, account_id: int) -> list[PaymentMethod]:
        """The account's cards, oldest first."""
        statement = (
            select(PaymentMethod)
            .where(PaymentMethod.account_id == account_id, self.scope.accounts(col(PaymentMethod.account_id)))
            .order_by(col(PaymentMethod.created_at), col(PaymentMethod.id))
        )
        return list((await self.session.exec(statement)).all())

    async def of_accounts(self, account_ids: Iterable[int]) -> list[PaymentMethodRow]:
        """The cards of the accounts among `account_ids`, each account's default first, then oldest first (one
        statement: the dataloader's batch)."""
        rows = await self.scope.rows(self.session, _of_accounts, {"ids": list(account_ids)})
        return [PaymentMethodRow._make(row) for row in rows]

    async def get(self, payment_method_id: int) -> PaymentMethod | None:
        """The card by id, if it belongs to an account of the scope."""
        if self.scope.principal is None:
            return await self.session.get(PaymentMethod, payment_method_id)  # the identity map may answer
        statement = select(PaymentMethod).where(
            col(PaymentMethod.id) == payment_method_id, self.scope.accounts(col(PaymentMethod.account_id))
        )
        return (await self.session.exec(statement)).first()

    async def by_stripe_id(self, stripe_payment_method_id: str) -> PaymentMethod | None:
        statement = select(PaymentMethod).where(
            PaymentMethod.stripe_payment_method_id == stripe_payment_method_id,
            self.scope.accounts(col(PaymentMethod.account_id)),
        )
        return (await self.session.exec(statement)).first()

    def add(self, method: PaymentMethod) -> None:
        self.session.add(method)

    async def remove(self, method: PaymentMethod) -> None:
        await self.session.delete(method)

    async def flush(self) -> None:
        await self.session.flush()

    async def clear_default(self, account_id: int, keep_id: int) -> Sequence[int]:
        """Unmark the account's default card unless it is `keep_id`; the ids of the cards unmarked."""
        unmarked = await self.session.exec(
            update(PaymentMethod)
            .where(
                col(PaymentMethod.account_id) == account_id,
                col(PaymentMethod.id) != keep_id,
                col(PaymentMethod.is_default),
                self.scope.accounts(col(PaymentMethod.account_id)),
            )
            .values(is_default=False)
            .returning(col(PaymentMethod.id))
        )
        return unmarked.scalars().all()

    async def account_of_customer(self, stripe_customer_id: str) -> Account | None:
        """The account whose Stripe customer this is."""
        statement = select(Account).where(
            Account.stripe_customer_id == stripe_customer_id, self.scope.accounts(col(Account.id))
        )
        return (await self.session.exec(statement)).first()

    async def set_customer(self, account_id: int, stripe_customer_id: str) -> None:
        """Remember the account's Stripe customer, unless it has one already (the first one made stays)."""
        await self.session.exec(
            update(Account)
            .where(
                col(Account.id) == account_id,
                col(Account.stripe_customer_id).is_(None),
                self.scope.accounts(col(Account.id)),
            )
            .values(stripe_customer_id=stripe_customer_id)
        )


@cache  # built once per database kind and scope rule: every Billing page and dashboard asks
def _of_accounts(dialect: str, reach: Reach) -> sqlalchemy.Select[Any]:
    account_id = col(PaymentMethod.account_id)
    return (
        sqlalchemy.select(*columns(PaymentMethod, PaymentMethodRow._fields))
        .where(among_parameter(dialect, account_id, "ids"), reach_rule(reach, account_id))
        .order_by(col(PaymentMethod.is_default).desc(), col(PaymentMethod.created_at), col(PaymentMethod.id))
    )
