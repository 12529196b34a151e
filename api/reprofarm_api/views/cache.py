"""Answers of the costly read models (the overview's map, the Go comparison), kept
until the runs they count change.

Every open dashboard asks again after each change the live endpoint announces:
with twenty tabs open, one computation per change serves them all, instead of
twenty. The key holds the parts of ``reprofarm_db.views.changes`` the answer reads
(runs, analyses, jobs), so a kept answer is never older than what /live says.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")


class ByVersion:
    """A small LRU of answers keyed by (request, data version)."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]  # type: ignore[return-value]
        answer = make()  # outside the lock: two first askers may both compute it
        with self._lock:
            self._items[key] = answer
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return answer
