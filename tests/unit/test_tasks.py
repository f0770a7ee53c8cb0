"""The task object: `run_stage` dispatches to a task's own stage functions, shared bodies otherwise."""

from __future__ import annotations

import pytest

from kdflow import tasks
from kdflow.config import Params
from kdflow.errors import KdflowError
from kdflow.stages import registry
from kdflow.tasks.base import Task
from kdflow.tasks.names import TASKS
from tests.helpers import fresh_python


def test_every_declared_task_loads_and_names_itself():
    for name in TASKS:
        task = tasks.get(name)
        assert isinstance(task, Task) and task.name == name
        for stage in task.stages:
            assert stage in registry.BY_NAME, f"task {name} declares unknown stage {stage}"


def test_config_task_names_come_from_the_declaration():
    with pytest.raises(ValueError, match="task"):
        Params.model_validate({"task": "no-such-task", "teacher": {"model": {"name": "mlp"}},
                               "student": {"model": {"name": "mlp"}}})


def test_tasks_names_import_no_torch():
    fresh_python("import kdflow.tasks.names, kdflow.tasks, sys; assert 'torch' not in sys.modules")


def test_run_stage_calls_the_tasks_own_function(monkeypatch, tmp_path):
    class Probe(Task):
        name = "classification"
        stages = {"evaluate": "tests.unit.test_tasks:_probe_evaluate"}
        without = frozenset({"finetune"})

    monkeypatch.setattr(tasks, "get", lambda name: Probe())
    CALLS.clear()
    cfg = Params.model_validate({"teacher": {"model": {"name": "mlp"}}, "student": {"model": {"name": "mlp"}}})
    assert registry.run_stage("evaluate", cfg, {"data": tmp_path}, {"metrics": tmp_path / "m"}) == {"probe": 1}
    assert CALLS == [("evaluate", tmp_path)]
    with pytest.raises(KdflowError, match="task classification has no stage finetune"):
        registry.run_stage("finetune", cfg, {}, {})


CALLS: list = []


def _probe_evaluate(cfg, inputs, outputs):
    CALLS.append(("evaluate", inputs["data"]))
    return {"probe": 1}


def test_embedding_task_refuses_logits_as_its_signal():
    task = tasks.get("embedding")
    with pytest.raises(KdflowError, match="logits"):
        task.check_signal({"target": "logits", "num_classes": 10}, {"embedding_dim": 8}, {"num_classes": 2})
    task.check_signal({"target": "embedding", "embedding_dim": 8, "num_classes": 8}, {"embedding_dim": 8}, {})


def test_classification_task_refuses_a_class_count_mismatch():
    with pytest.raises(KdflowError, match="class-count mismatch"):
        tasks.get("classification").check_signal({"num_classes": 10}, {}, {"num_classes": 3})
