"""Recent predictions kept for late ground truth (`POST /feedback`), bounded by count."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Prediction:
    version: str
    predicted: tuple[int, ...]   # class index per input of the request
    classes: tuple[str, ...]


class FeedbackStore:
    """Oldest ids are forgotten first. An id is consumed by its feedback, so each prediction is
    scored at most once (a retried /feedback cannot double-count)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict[str, Prediction] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def remember(self, request_id: str, prediction: Prediction) -> None:
        self._items[request_id] = prediction
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def take(self, request_id: str) -> Prediction | None:
        return self._items.pop(request_id, None)

    def put_back(self, request_id: str, prediction: Prediction) -> None:
        self._items[request_id] = prediction
