"""API keys, and which accounts a key acts for.

No scope: a key is looked up by its prefix to find out who the caller is, before there is a principal to scope
anything by, and a key's own grants (its account, or its partner's accounts) are what a scope is made of.
"""

from datetime import datetime
from typing import TYPE_CHECKING, Literal, NamedTuple

import sqlalchemy
from sqlalchemy import BindParameter, ColumnElement, bindparam, false, true
from sqlalchemy.orm import Mapped
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import prepared
from models import ApiKey, PartnerAccount, PrincipalKind

if TYPE_CHECKING:  # billing.keys.service builds this repository
    from billing.keys.service import Principal


def accounts_of(
    principal: "Principal", column: ColumnElement[int] | Mapped[int] | Mapped[int | None]
) -> ColumnElement[bool]:
    """A WHERE clause limiting an account id `column` to the accounts `principal` acts for."""
    return reach_rule(reach_of(principal), column, principal)


# Which rule of `accounts_of` applies to a principal: a statement built once per reach serves every principal
# of that reach, with `reach_parameters` as the values of its rule's parameters.
Reach = Literal["all", "account", "partner", "none"]


def reach_of(principal: "Principal") -> Reach:
    if principal.kind is PrincipalKind.ADMIN:
        return "all"
    if principal.kind is PrincipalKind.MEMBER and principal.account_id is not None:
        return "account"
    if principal.kind is PrincipalKind.PARTNER and principal.partner_id is not None:
        return "partner"
    return "none"


def reach_parameters(principal: "Principal") -> dict[str, int]:
    """The values of `reach_rule(reach_of(principal), ...)`'s parameters when it was built without them."""
    reach = reach_of(principal)
    if reach == "account" and principal.account_id is not None:
        return {"scope_account_id": principal.account_id}
    if reach == "partner" and principal.partner_id is not None:
        return {"scope_partner_id": principal.partner_id}
    return {}


def reach_rule(
    reach: Reach,
    column: ColumnElement[int] | Mapped[int] | Mapped[int | None],
    principal: "Principal | None" = None,
) -> ColumnElement[bool]:
    """`reach`'s WHERE clause on an account id `column`: with `principal`'s ids in it, or (without one) with the
    parameters `scope_account_id` / `scope_partner_id` for `reach_parameters` to fill."""
    values = {} if principal is None else reach_parameters(principal)
    bound = (
        principal is not None
    )  # a value of its own: unique, as any literal, where one statement has two rules
    if reach == "all":
        return true()
    if reach == "account":
        return column == bindparam("scope_account_id", values.get("scope_account_id"), unique=bound)
    if reach == "partner":
        partner: BindParameter[int] = bindparam(
            "scope_partner_id", values.get("scope_partner_id"), unique=bound
        )
        granted = select(PartnerAccount.account_id).where(PartnerAccount.partner_id == partner)
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
        connection = await self.session.connection()
        rows = await prepared.rows(connection, _BY_PREFIX, {"prefix": prefix})
        return StoredKey(*rows[0]) if rows else None

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
