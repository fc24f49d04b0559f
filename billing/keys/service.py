"""API keys and principals: who is calling, and (through `Scope.of(principal)`) which accounts they may touch."""

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from billing.audit.actors import Actor, ActorKind
from billing.audit.service import OPERATOR_TRAIL
from billing.errors import DomainError, NotFound
from billing.events import service as events
from billing.keys.repository import KeyRepository
from models import ApiKey, PrincipalKind
from models.types import utcnow

KEY_PREFIX = "bk"


class InvalidApiKey(DomainError):
    pass


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    api_key_id: int
    account_id: int | None = None
    partner_id: int | None = None
    # The key's label and visible prefix, for the audit trail's "who" (never its secret).
    key_name: str | None = None
    key_prefix: str | None = None

    @property
    def actor(self) -> Actor:
        return Actor(ActorKind(self.kind.value), self.key_name, self.key_prefix)

    @property
    def home_account_id(self) -> int | None:
        """The account `account(id:)` means when no id is given."""
        return self.account_id

    @property
    def may_record_usage(self) -> bool:
        """Usage reporters are trusted services that report for every account (and read none)."""
        return self.kind in (PrincipalKind.USAGE_REPORTER, PrincipalKind.ADMIN)

    @property
    def may_manage_lead_plans(self) -> bool:
        return self.kind in (PrincipalKind.PARTNER, PrincipalKind.ADMIN)


def _hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def key_prefix(raw_key: str) -> str | None:
    """The visible prefix of a well-formed key (12 hex digits, as `create_api_key` makes them), else None."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 12:
        return None
    if not all(character in string.hexdigits for character in parts[1]):
        return None
    return parts[1]


async def create_api_key(
    session: AsyncSession,
    *,
    kind: PrincipalKind,
    name: str,
    account_id: int | None = None,
    partner_id: int | None = None,
) -> tuple[ApiKey, str]:
    """A new key; the raw key is returned once and only its hash is stored."""
    if (kind is PrincipalKind.MEMBER) != (account_id is not None):
        raise ValueError("member keys, and only they, name an account")
    if (kind is PrincipalKind.PARTNER) != (partner_id is not None):
        raise ValueError("partner keys, and only they, name a partner")
    prefix = secrets.token_hex(6)
    raw = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        prefix=prefix,
        secret_hash=_hash(raw),
        kind=kind,
        account_id=account_id,
        partner_id=partner_id,
        name=name,
    )
    await KeyRepository(session).add(key)
    assert key.id is not None
    for trail in await _trails_of(session, key):
        events.record(session, events.ApiKeyCreated(trail, key.id, key.name, key.prefix, key.kind))
    return key, raw


async def revoke_api_key(session: AsyncSession, prefix: str) -> None:
    key = await KeyRepository(session).revoke(prefix, utcnow())
    if key is None:
        raise NotFound(f"no active API key with prefix {prefix}")
    assert key.id is not None
    for trail in await _trails_of(session, key):
        events.record(session, events.ApiKeyRevoked(trail, key.id, key.name, key.prefix, key.kind))


async def _trails_of(session: AsyncSession, key: ApiKey) -> list[int]:
    """The audit trails that record a key's creation and revocation: the operator's, for every key of every
    kind, and each account's the key acts on (a member key's account, every account its partner manages now;
    admin and usage-reporter keys act on no one account)."""
    if key.account_id is not None:
        return [OPERATOR_TRAIL, key.account_id]
    if key.partner_id is None:
        return [OPERATOR_TRAIL]
    return [OPERATOR_TRAIL, *await KeyRepository(session).partner_accounts(key.partner_id)]


async def authenticate(session: AsyncSession, raw_key: str) -> Principal:
    """The principal behind a raw key; every failure looks the same to the caller."""
    prefix = key_prefix(raw_key)
    key = None
    if prefix is not None:
        key = await KeyRepository(session).by_prefix(prefix)
    # Compare even when no key was found, so timing tells nothing about which prefixes exist.
    expected = key.secret_hash if key is not None else _hash("")
    if not hmac.compare_digest(expected, _hash(raw_key)) or key is None or key.revoked_at is not None:
        raise InvalidApiKey("invalid or revoked API key")
    assert key.id is not None
    return Principal(
        kind=PrincipalKind(key.kind),
        api_key_id=key.id,
        account_id=key.account_id,
        partner_id=key.partner_id,
        key_name=key.name,
        key_prefix=key.prefix,
    )
