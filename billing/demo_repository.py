"""The demo seed's rows, found by the names the seed gives them: for the seed itself (`cli seed-demo`) and for
production's refusal to start while the demo's keys work. Both run as the system (billing/demo.py,
billing/production.py); the account rows read here still pass through the scope."""

from sqlmodel import col, delete, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.scope import Scope
from models import Account, ApiKey, Partner, PaymentMethod


class DemoRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    async def account_named(self, name: str) -> Account | None:
        statement = select(Account).where(Account.name == name, self.scope.accounts(col(Account.id)))
        return (await self.session.exec(statement)).first()

    async def partner_named(self, name: str) -> Partner | None:
        """A partner is no account's row: no account filter applies."""
        return (await self.session.exec(select(Partner).where(Partner.name == name))).first()

    async def active_key_prefixes(self, account_name: str, partner_name: str) -> list[str]:
        """The prefixes of the unrevoked keys of the account and of the partner so named, in order."""
        account = select(Account.id).where(Account.name == account_name, self.scope.accounts(col(Account.id)))
        partner = select(Partner.id).where(Partner.name == partner_name)
        statement = (
            select(ApiKey.prefix)
            .where(
                col(ApiKey.revoked_at).is_(None),
                or_(col(ApiKey.account_id).in_(account), col(ApiKey.partner_id).in_(partner)),
            )
            .order_by(col(ApiKey.prefix))
        )
        return list((await self.session.exec(statement)).all())

    async def forget_cards(self, account_id: int) -> None:
        """Delete the account's local cards (a fresh Stripe stand-in no longer has them)."""
        await self.session.exec(
            delete(PaymentMethod).where(
                col(PaymentMethod.account_id) == account_id,
                self.scope.accounts(col(PaymentMethod.account_id)),
            )
        )
