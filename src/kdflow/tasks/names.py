"""Every task, declared once: its `task:` name in params.yaml -> the class that implements it.

Torch-free, so `kdflow.config` validates `task:` and the CLI lists tasks without importing a model library.
Adding a task is one module in `kdflow/tasks/` plus one line here.
"""

from __future__ import annotations

TASKS: dict[str, tuple[str, str]] = {
    # name: ("module:Class", what it distills)
    "classification": ("kdflow.tasks.classification:Classification",
                       "classifiers of vectors, signals, images and text (the default)"),
    "embedding": ("kdflow.tasks.embedding:Embedding",
                  "sentence encoders (teacher.source encoder:<dir>, student text-embed, an embedding_* loss)"),
}

TASK_NAMES: tuple[str, ...] = tuple(TASKS)
