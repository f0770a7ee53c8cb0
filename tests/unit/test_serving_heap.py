"""The serving process's garbage-collector settings (the cause of its latency tail)."""

import gc

import pytest

from kdflow.serving import heap
from kdflow.serving.feedback import FeedbackStore, Prediction


@pytest.fixture
def restore_gc():
    thresholds = gc.get_threshold()
    heap._enabled = False  # an in-process `main()` of an earlier test may have configured it
    gc.unfreeze()
    yield
    heap._enabled = False
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_settle_freezes_the_loaded_heap_only_in_a_configured_process(restore_gc):
    heap.settle()
    assert gc.get_freeze_count() == 0  # imported (tests, tools): the process's collector is left alone
    heap.configure()
    assert gc.get_threshold() == heap.THRESHOLDS
    heap.settle()
    assert gc.get_freeze_count() > 1000  # what was alive is out of every later collection's walk


def test_remembered_predictions_are_not_tracked_by_the_collector():
    store = FeedbackStore(10)
    store.remember("a", Prediction("1", (3, 4), ("x", "y", "z", "w", "v")))
    gc.collect()
    assert not gc.is_tracked(store._items["a"])
    assert store.take("a") == Prediction("1", (3, 4), ("x", "y", "z", "w", "v"))
