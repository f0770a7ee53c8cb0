"""Tasks: classification (vectors, signals, images, text), embedding, and what `names.TASKS` declares."""

from __future__ import annotations

from functools import cache

from kdflow.tasks.base import Task, load_ref
from kdflow.tasks.names import TASK_NAMES, TASKS

__all__ = ["TASK_NAMES", "Task", "get", "of_spec"]


@cache
def get(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task '{name}'; tasks: {', '.join(TASK_NAMES)}")
    return load_ref(TASKS[name][0])()


def of_spec(spec: dict) -> Task:
    """The task a saved model was made for (model.json `task`, classification when absent)."""
    return get(spec.get("task", "classification"))
