"""A response cache for GraphQL queries: answers stored by key, least recently used evicted first, bounded by bytes.

Domain-free: the caller builds the key (the document, its variables, who asks, and the data version of what it
may see, read from the database), so an entry is found only while everything it was computed from is
unchanged, and this class never has to invalidate anything. Per process: every process reads the version from
the database, so a write in any process, the worker or a Stripe webhook changes the key everywhere.
"""

from collections.abc import Hashable

from billing.lru import LruCache

# What an entry costs beyond its body (the key, the dict slot), so that many tiny answers are bounded too.
ENTRY_OVERHEAD_BYTES = 256


def _bytes(body: bytes) -> int:
    return len(body) + ENTRY_OVERHEAD_BYTES


class ResponseCache(LruCache[Hashable, bytes]):
    """Encoded response bodies by key, at most `max_bytes` in all (bodies plus a fixed overhead per entry)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes, _bytes)

    @property
    def max_bytes(self) -> int:
        return self.capacity
