"""A bounded LRU cache of ask results, keyed on `Query.cache_key`: the normalised question, index version
and options.

The index version is part of the key, so an index update makes every older entry unreachable;
those entries then age out of the LRU order instead of being served. Hits show on /metrics as the
count of the `cache` stage (citeqa_stage_duration_seconds_count{stage="cache"}).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from citeqa.service.qa.types import AskResult


class AnswerCache:
    """Thread-safe; `capacity` 0 turns it off."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[Hashable, ...], AskResult] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Hashable, ...]) -> AskResult | None:
        if self.capacity <= 0:
            return None
        with self._lock:
            result = self._entries.get(key)
            if result is not None:
                self._entries.move_to_end(key)
            return result

    def put(self, key: tuple[Hashable, ...], result: AskResult) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._entries[key] = result
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
