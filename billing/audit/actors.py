"""Who is changing things: the actor an audit entry names (billing/audit/service.py), kept for the duration of the work.

The HTTP layer acts as the request's API key, the Stripe webhook route as "stripe", the command line as the
operator who runs it (their OS user name); anything else (the worker, reconciliation) is "system". A context variable rather than a parameter: the services that
record settings events take a session or a session factory, and the commit hook that stamps the events
(billing/events/service.py) runs inside SQLAlchemy, where no parameter reaches. SQLAlchemy runs that hook in a greenlet
that shares the calling task's context, so the variable set around the work is the one it reads.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum


class ActorKind(StrEnum):
    # An API key's principal kind (models.PrincipalKind's values)...
    MEMBER = "member"
    PARTNER = "partner"
    ADMIN = "admin"
    USAGE_REPORTER = "usage_reporter"
    # ...or a person at the command line (`python -m cli`)...
    OPERATOR = "operator"
    # ...or a process acting on its own.
    SYSTEM = "system"
    STRIPE = "stripe"


@dataclass(frozen=True)
class Actor:
    """An API key's principal kind with the key's name and visible prefix, an operator with their user name, or
    a process with neither. Never the key's secret."""

    kind: ActorKind
    name: str | None = None
    key_prefix: str | None = None


SYSTEM = Actor(ActorKind.SYSTEM)
STRIPE = Actor(ActorKind.STRIPE)
# What the audit trail keeps of a name (the column's width).
MAX_NAME_LENGTH = 200


def operator(user_name: str) -> Actor:
    return Actor(ActorKind.OPERATOR, user_name[:MAX_NAME_LENGTH])


_current: ContextVar[Actor] = ContextVar("billing_actor", default=SYSTEM)


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Changes committed inside the block are recorded as made by `actor`."""
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)


def current_actor() -> Actor:
    return _current.get()
