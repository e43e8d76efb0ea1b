"""`SortedMap`: values kept in key order, for sequences of thousands that change a few entries at a time.

Resolution keeps its sandboxes and routing keys in one, the xDS compiler the edge's preview hosts: a
change sets or removes an entry by binary search, and the ordered values are copied out in C
(`tuple(m.values)`), so neither rebuilds nor re-sorts the whole sequence.
"""

from __future__ import annotations

import bisect
from typing import Generic, Iterable, TypeVar

V = TypeVar("V")


class SortedMap(Generic[V]):
    __slots__ = ("keys", "values")

    def __init__(self, items: Iterable[tuple[str, V]] = ()) -> None:
        pairs = sorted(items, key=lambda kv: kv[0])
        self.keys: list[str] = [k for k, _ in pairs]  # sorted, unique
        self.values: list[V] = [v for _, v in pairs]  # in the same order

    def get(self, key: str) -> V | None:
        i = bisect.bisect_left(self.keys, key)
        return self.values[i] if i < len(self.keys) and self.keys[i] == key else None

    def set(self, key: str, value: V | None) -> None:
        """Add or replace `key`'s value; None removes the key."""
        i = bisect.bisect_left(self.keys, key)
        present = i < len(self.keys) and self.keys[i] == key
        if value is None:
            if present:
                del self.keys[i], self.values[i]
        elif present:
            self.values[i] = value
        else:
            self.keys.insert(i, key)
            self.values.insert(i, value)

    def copy(self) -> SortedMap[V]:
        out = SortedMap.__new__(SortedMap)
        out.keys, out.values = list(self.keys), list(self.values)
        return out

    def __len__(self) -> int:
        return len(self.keys)
