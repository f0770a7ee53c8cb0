"""Recent predictions kept for late ground truth (`POST /feedback`), bounded by count."""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple


class Prediction(NamedTuple):
    version: str
    predicted: tuple[int, ...]   # class index per input of the request
    classes: tuple[str, ...]


class FeedbackStore:
    """Oldest ids are forgotten first. An id is consumed by its feedback, so each prediction is
    scored at most once (a retried /feedback cannot double-count)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        # plain tuples of atoms: the garbage collector untracks them after one pass (not a subclass's
        # instances), so the remembered predictions do not lengthen a busy server's full collections
        self._items: OrderedDict[str, tuple] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def remember(self, request_id: str, prediction: Prediction) -> None:
        self._items[request_id] = tuple(prediction)
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def take(self, request_id: str) -> Prediction | None:
        item = self._items.pop(request_id, None)
        return None if item is None else Prediction._make(item)

    def put_back(self, request_id: str, prediction: Prediction) -> None:
        self._items[request_id] = tuple(prediction)
