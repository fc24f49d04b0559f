"""A response cache for GraphQL queries: answers stored by key, least recently used evicted first, bounded by bytes.

Domain-free: the caller builds the key (the document, its variables, who asks, and the data version of what it
may see, read from the database), so an entry is found only while everything it was computed from is
unchanged, and this class never has to invalidate anything. Per process: every process reads the version from
the database, so a write in any process, the worker or a Stripe webhook changes the key everywhere.
"""

from collections import OrderedDict
from collections.abc import Hashable

# What an entry costs beyond its body (the key, the dict slot), so that many tiny answers are bounded too.
ENTRY_OVERHEAD_BYTES = 256


class ResponseCache:
    """Encoded response bodies by key, at most `max_bytes` in all (bodies plus a fixed overhead per entry)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> bytes | None:
        body = self._entries.get(key)
        if body is not None:
            self._entries.move_to_end(key)
        return body

    def put(self, key: Hashable, body: bytes) -> None:
        cost = len(body) + ENTRY_OVERHEAD_BYTES
        if cost > self.max_bytes:
            return  # larger than the whole cache: it would only evict everything else
        previous = self._entries.pop(key, None)
        if previous is not None:
            self.size -= len(previous) + ENTRY_OVERHEAD_BYTES
        self._entries[key] = body
        self.size += cost
        while self.size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.size -= len(evicted) + ENTRY_OVERHEAD_BYTES
