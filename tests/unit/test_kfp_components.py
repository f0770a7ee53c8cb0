"""Each KFP component, checked the way kubeflow/pipelines-components checks its own: it imports and
compiles, its metadata.yaml is complete, its generated README.md and compiled component.yaml are
current, and its module imports only the stdlib, kfp, and what the kdflow image provides.
Regenerate with `kdflow pipeline components --write`."""

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from kdflow.kfp import validate
from kdflow.kfp.components import NAMES, STAGE, load


@pytest.mark.parametrize("name", NAMES)
def test_component_compiles_and_its_files_are_current(name):
    for path, text in validate.generated(name).items():
        assert path.read_text() == text, f"{path} is stale: run `kdflow pipeline components --write`"
    meta = yaml.safe_load((validate.ROOT / name / "metadata.yaml").read_text())
    assert validate.METADATA_KEYS <= set(meta) and meta["name"] == name
    assert any(d["name"] == "Pipelines" for d in meta["dependencies"]["kubeflow"])
    assert validate.import_violations(validate.ROOT / name / "component.py") == []
    assert load(name).component_spec.implementation.container.image == "ghcr.io/kdflow/kdflow:0.1.0"


def test_every_directory_is_a_registered_component_and_the_check_passes():
    assert sorted(p.name for p in validate.ROOT.iterdir() if (p / "component.py").is_file()) == sorted(NAMES)


def test_components_run_the_stages_they_name():
    """A component is a thin call into kdflow.stages: its stage module defines the `run` the CLI and DVC
    call (read, not imported: importing every stage loads torch and Lightning), and the component's
    source calls that module."""
    stages = Path(importlib.util.find_spec("kdflow.stages").origin).parent
    for name, stage in STAGE.items():
        if stage is None:
            continue
        tree = ast.parse((stages / f"{stage}.py").read_text())
        assert "run" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, stage
        source = (validate.ROOT / name / "component.py").read_text()
        assert f"kdflow.stages import {stage}" in source or f"kdflow.stages.{stage} import" in source \
            or "kdflow.kfp.jobs import launch" in source, name


def test_import_guard_catches_what_the_image_lacks(tmp_path):
    bad = tmp_path / "bad" / "component.py"
    bad.parent.mkdir()
    bad.write_text("import torch\nfrom kfp import dsl\n\n\n@dsl.component\ndef bad():\n"
                   "    import json\n    import kdflow.stages\n    import definitely_not_in_the_image\n")
    problems = validate.import_violations(bad)
    assert problems == ["bad: module-level import torch (allowed: ['__future__', 'kdflow.kfp.image', 'kfp', "
                        "'kfp.dsl'])",
                        "bad: bad imports definitely_not_in_the_image, which the kdflow image does not provide"]
    assert {"torch", "mlflow", "numpy", "kfp", "kdflow"} <= validate.image_modules()


def test_every_pipeline_stage_of_the_registry_has_a_component():
    """The component set follows kdflow.stages.registry: each stage of the default pipeline runs in a
    component, and each component's stage is a registered one (or a plain stage module for the two
    pipeline-only helpers, select_best and merge_soft_targets)."""
    from kdflow.stages.registry import STAGES

    registered = {s.name for s in STAGES}
    assert {s.name for s in STAGES if s.pipeline} <= set(STAGE.values())
    assert set(filter(None, STAGE.values())) - registered <= {"select_best", "merge_soft_targets"}
    uncached = {s.name for s in STAGES if not s.cacheable}  # prepare: cached in KFP on its data_version key
    assert uncached - {"prepare"} <= {STAGE[c] for c in ("register",)}
