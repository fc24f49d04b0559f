"""The Stripe customer portal (invoices, payment history, cards), returning only to pages we trust."""

from urllib.parse import urlsplit

from billing.db import SessionFactory
from billing.errors import DomainError
from billing.payment_methods import customers
from billing.scope import Scope
from billing.stripe_gateway import StripeGateway

_DEFAULT_PORTS = {"http": 80, "https": 443}


class ReturnUrlNotAllowed(DomainError):
    pass


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an absolute http(s) URL; None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def is_allowed_return_url(url: str, allowlist: list[str]) -> bool:
    """Same scheme, host and port as an allow-listed URL and under its path, compared parsed, not as text."""
    origin = _origin(url)
    if origin is None:
        return False
    path = urlsplit(url).path or "/"
    for allowed in allowlist:
        if _origin(allowed) != origin:
            continue
        prefix = urlsplit(allowed).path.rstrip("/")
        if not prefix or path == prefix or path.startswith(prefix + "/"):
            return True
    return False


async def create_portal_session(
    factory: SessionFactory,
    scope: Scope,
    gateway: StripeGateway,
    account_id: int,
    return_url: str,
    allowlist: list[str],
) -> str:
    """The portal URL for this account's customer."""
    if not is_allowed_return_url(return_url, allowlist):
        raise ReturnUrlNotAllowed("the return URL is not on the allow-list")
    return await gateway.create_portal_session(
        await customers.customer_id(factory, scope, gateway, account_id), return_url
    )
