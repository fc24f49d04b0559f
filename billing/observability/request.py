"""The request being served: its id, and what the GraphQL layer learnt about it (for metrics and the log line).

Held in a context variable set by the HTTP middleware for the request's duration, so the error policy and the
schema extension reach it without a parameter through every layer; the id is also bound to every structlog
line of the request (`structlog.contextvars`), and stdlib `logging` lines get it through the formatter.
"""

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import structlog

# A client's own id is kept when it is a plain token: it is echoed in a response header and written to logs,
# so no spaces, quotes or control characters, and a bounded length (a UUID, a ULID, a base64 trace id fit).
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")


@dataclass
class RequestObservation:
    request_id: str
    # What the schema saw, set by root/observability.py once per request (never per field).
    reached_schema: bool = False
    executed: bool = False  # the document validated and ran
    operation_name: str | None = None  # as the schema resolved it (requested, or the document's only one)
    errors: bool = False


_current: ContextVar[RequestObservation | None] = ContextVar("billing_request", default=None)


def request_id_from(header: str | None) -> str:
    """The client's `X-Request-Id` when it is a sane token, else a new one."""
    if header is not None and _SANE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


@contextmanager
def observed_request(request_id: str) -> Iterator[RequestObservation]:
    """The request's observation for the block, with its id bound to every log line written meanwhile."""
    observation = RequestObservation(request_id)
    token = _current.set(observation)
    try:
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            yield observation
    finally:
        _current.reset(token)


def current_request() -> RequestObservation | None:
    """The request being served, or None outside one (tests executing the schema directly, the worker)."""
    return _current.get()


def current_request_id() -> str | None:
    observation = _current.get()
    return observation.request_id if observation is not None else None
