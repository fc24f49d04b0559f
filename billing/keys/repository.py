"""API keys, and which accounts a key acts for.

No scope: a key is looked up by its prefix to find out who the caller is, before there is a principal to scope
anything by, and a key's own grants (its account, or its partner's accounts) are what a scope is made of.
"""

from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

import sqlalchemy
from sqlalchemy import ColumnElement, bindparam, false, true
from sqlalchemy.orm import Mapped
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from models import ApiKey, PartnerAccount, PrincipalKind

if TYPE_CHECKING:  # billing.keys.service builds this repository
    from billing.keys.service import Principal


def accounts_of(
    principal: "Principal", column: ColumnElement[int] | Mapped[int] | Mapped[int | None]
) -> ColumnElement[bool]:
    """A WHERE clause limiting an account id `column` to the accounts `principal` acts for."""
    if principal.kind is PrincipalKind.ADMIN:
        return true()
    if principal.kind is PrincipalKind.MEMBER and principal.account_id is not None:
        return column == principal.account_id
    if principal.kind is PrincipalKind.PARTNER and principal.partner_id is not None:
        granted = select(PartnerAccount.account_id).where(PartnerAccount.partner_id == principal.partner_id)
        return column.in_(granted)
    return false()


class StoredKey(NamedTuple):
    """What checking a key needs of its row."""

    id: int | None  # as the model types it; a stored row always has one
    secret_hash: str
    kind: str
    account_id: int | None
    partner_id: int | None
    name: str | None
    prefix: str
    revoked_at: datetime | None


# Every request checks its key: built once, and its columns read without the ORM (half the CPU of an entity).
_BY_PREFIX = sqlalchemy.select(  # SQLModel's select types at most four columns
    col(ApiKey.id),
    col(ApiKey.secret_hash),
    col(ApiKey.kind),
    col(ApiKey.account_id),
    col(ApiKey.partner_id),
    col(ApiKey.name),
    col(ApiKey.prefix),
    col(ApiKey.revoked_at),
).where(col(ApiKey.prefix) == bindparam("prefix"))


class KeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_prefix(self, prefix: str) -> "StoredKey | None":
        row = (await (await self.session.connection()).execute(_BY_PREFIX, {"prefix": prefix})).first()
        return None if row is None else StoredKey(*row)

    async def add(self, key: ApiKey) -> None:
        self.session.add(key)
        await self.session.flush()

    async def revoke(self, prefix: str, at: datetime) -> ApiKey | None:
        """Revoke the active key with `prefix`; None if there is none (unknown, or revoked already)."""
        statement = (
            update(ApiKey)
            .where(col(ApiKey.prefix) == prefix, col(ApiKey.revoked_at).is_(None))
            .values(revoked_at=at)
            .returning(ApiKey)
        )
        key = (await self.session.exec(statement)).scalar_one_or_none()
        assert key is None or isinstance(key, ApiKey)
        return key

    async def partner_accounts(self, partner_id: int) -> list[int]:
        """The ids of the accounts a partner manages now, in order."""
        granted = select(PartnerAccount.account_id).where(PartnerAccount.partner_id == partner_id)
        return sorted((await self.session.exec(granted)).all())
