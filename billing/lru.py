"""A cache that evicts the least recently used entries first, bounded by the total cost of its entries (one each,
unless a cost is given): the checked documents (root/limits.py), the prefetch plans (schema/preload.py) and the
response cache (server_cache.py, by bytes)."""

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


def _one(_: object) -> int:
    return 1


class LruCache(Generic[Key, Value]):
    def __init__(self, capacity: int, cost: Callable[[Value], int] = _one) -> None:
        self.capacity = capacity
        self.cost = cost
        self.size = 0  # the cost of what it holds
        self._entries: OrderedDict[Key, Value] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> Value | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: Key, value: Value) -> None:
        cost = self.cost(value)
        if cost > self.capacity:
            return  # more than the whole cache: it would only evict everything else
        previous = self._entries.pop(key, None)
        if previous is not None:
            self.size -= self.cost(previous)
        self._entries[key] = value
        self.size += cost
        while self.size > self.capacity:
            _, evicted = self._entries.popitem(last=False)
            self.size -= self.cost(evicted)
