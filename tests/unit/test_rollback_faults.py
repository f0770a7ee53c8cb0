"""Issue 25, one fault at a time, each reproduced against a real sqlite MLflow store: a transient registry
error during a rollback, targets that raise at load or at the smoke prediction, a memory bomb and a path
traversal in a registry entry, an alert about another model, a load failure on the champion, and
--insecure-no-auth on a public address. Registry faults come from the real client wrapped by
tests.support.faults (it raises MlflowException(TEMPORARILY_UNAVAILABLE) at chosen calls)."""

import json
import os
import sys

import pytest
import torch
from mlflow.exceptions import MlflowException
from prometheus_client.parser import text_string_to_metric_families

from kdflow import tracking
from kdflow.errors import KdflowError
from kdflow.monitoring import champion
from kdflow.monitoring.controller import Controller, MonitorConfig, loopback, main
from kdflow.monitoring.decision import Alert, Evidence, Policy, State, decide
from kdflow.serving.server_metrics import ServerMetrics
from kdflow.serving.source import Loader, Source
from kdflow.serving.swap import Swapper
from kdflow.serving.trust import load_trusted
from tests.support.faults import Rule, injected
from tests.support.live import model_dir, register_dir

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
NAME = "faults"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """One sqlite store for the module (creating its schema costs seconds); each test registers its own model."""
    path = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{path / 'mlflow.db'}")
        yield path


@pytest.fixture()
def store(db, tmp_path, request, monkeypatch):
    """tmp_path, with NAME a model of this test only."""
    monkeypatch.setattr(sys.modules[__name__], "NAME", f"m-{request.node.name[:40]}")
    return tmp_path


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def promote_bad(tmp_path, previous: str, tag: str = "bad") -> str:
    bad = register_dir(NAME, model_dir(tmp_path / tag, seed=9), {tracking.PREVIOUS_TAG: previous})
    tracking.client().set_registered_model_alias(NAME, tracking.CHAMPION, bad)
    return bad


def breach(version: str, model: str | None = None, **labels) -> Alert:
    return Alert("KdflowHighErrorRate", {"alertname": "KdflowHighErrorRate", "model_name": model or NAME,
                                         "model_version": version, "rollback": "true", **labels})


def controller(**cfg) -> Controller:
    return Controller(MonitorConfig(model_name=NAME, prometheus_url="http://127.0.0.1:9", cooldown_s=600, **cfg))


def value(text: str, name: str, **labels) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


# -- 1. a transient registry error must not cancel a due rollback ------------------------------------------
def test_resolve_alias_raises_when_the_registry_cannot_answer(store):
    good = register_dir(NAME, model_dir(store / "good"))
    tracking.client().set_registered_model_alias(NAME, tracking.CHAMPION, good)
    with injected(Rule(method="get_model_version_by_alias", fail=1)), pytest.raises(MlflowException):
        tracking.resolve_alias(NAME, tracking.CHAMPION)
    assert tracking.resolve_alias(NAME, "no-such-alias") is None  # the registry's "not set" is still None


def test_transient_error_before_the_move_fails_the_rollback_visibly_and_the_next_check_does_it(store):
    good = register_dir(NAME, model_dir(store / "good"))
    bad = promote_bad(store, good)
    ctl = controller()
    ev = Evidence(bad, good, None, (breach(bad),))
    with injected(Rule(method="get_model_version_by_alias", step="rollback", fail=-1)) as plan:
        d = ctl._act(ev)
    assert plan.injected >= 3  # retried, then given up for this check
    assert d.action == "error" and "unavailable" in d.reason, d
    assert tracking.resolve_alias(NAME, tracking.CHAMPION) == bad
    assert bad not in ctl.state.handled and ctl.state.last_rollback_at is None  # not "handled", no cooldown
    text = ctl.metrics.render().decode()
    assert value(text, "kdflow_rollback_failures_total") == 1  # KdflowRollbackFailed fires on it
    d = ctl._act(ev)  # the registry answers again
    assert d.action == "rollback" and d.target == good, d
    assert tracking.resolve_alias(NAME, tracking.CHAMPION) == good
    assert tracking.client().get_model_version(NAME, bad).tags[champion.ROLLED_BACK_TO_TAG] == good


def test_a_few_transient_errors_at_every_step_are_absorbed_by_retries(store):
    good = register_dir(NAME, model_dir(store / "good"))
    bad = promote_bad(store, good)
    ctl = controller()
    rules = [Rule(method=m, fail=2) for m in ("search_model_versions", "get_model_version", "download",
                                              "set_registered_model_alias", "set_model_version_tag")]
    with injected(*rules, Rule(method="get_model_version_by_alias", step="rollback", fail=2)) as plan:
        d = ctl._act(Evidence(bad, good, None, (breach(bad),)))
    assert plan.injected == 12 and d.action == "rollback" and d.target == good, d
    assert tracking.resolve_alias(NAME, tracking.CHAMPION) == good
    assert value(ctl.metrics.render().decode(), "kdflow_rollback_failures_total") == 0


def test_alias_moved_by_someone_else_starts_no_cooldown(store):
    good = register_dir(NAME, model_dir(store / "good"))
    bad = promote_bad(store, good)
    ctl = controller()
    ctl._act(Evidence(bad, good))  # the controller sees the promotion
    tracking.client().set_registered_model_alias(NAME, tracking.CHAMPION, good)  # a person rolled back first
    d = ctl._act(Evidence(bad, good, None, (breach(bad),)))
    assert d.action == "none" and "already moved" in d.reason
    assert ctl.state.last_rollback_at is None


# -- 2. a target raising at load or at its smoke prediction is skipped, not fatal ----------------------------
def smoke_fails(path):
    """Loads fine, raises RuntimeError at the first forward pass: a (3, 1) mean broadcasts (b, 1, 6) inputs
    to (b, 3, 6), 18 features for a 6-input layer."""
    from kdflow.models import build_model, save_model

    spec = {"name": "mlp", "kwargs": {"hidden": [8]}, "input_shape": [1, 6], "num_classes": 3,
            "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "classes": ["c0", "c1", "c2"]}
    save_model(build_model(spec), path, spec)
    return path


def test_targets_raising_runtime_errors_are_skipped(store):
    good = register_dir(NAME, model_dir(store / "good"))
    at_load = model_dir(store / "load")  # a spec its builder cannot build: torch raises RuntimeError
    doc = json.loads((at_load / "model.json").read_text())
    (at_load / "model.json").write_text(json.dumps({**doc, "kwargs": {"hidden": [-1]}}))
    v_load = register_dir(NAME, at_load)
    v_smoke = register_dir(NAME, smoke_fails(store / "smoke"))
    bad = promote_bad(store, v_smoke)
    d = controller()._act(Evidence(bad, v_smoke, None, (breach(bad),)))
    assert d.action == "rollback" and d.target == good, d
    assert f"v{v_smoke}: RuntimeError" in d.reason and f"v{v_load}: " in d.reason, d.reason


# -- 3. a 188-byte spec must not allocate gigabytes ------------------------------------------------------------
def bomb(path, **spec):
    path.mkdir()
    doc = {"name": "mlp", "kwargs": {"hidden": [20000, 20000]}, "input_shape": [1, 6], "num_classes": 3,
           "mean": [0.0], "std": [1.0], **spec}
    (path / "model.json").write_text(json.dumps(doc))
    torch.save({"net.head.bias": torch.zeros(3)}, path / "model.pt")
    return path


def test_memory_bomb_spec_is_refused_before_anything_is_allocated(tmp_path):
    path = bomb(tmp_path / "bomb")
    assert len((path / "model.json").read_bytes()) < 200
    before = rss_mib()
    with pytest.raises(KdflowError, match="parameters .*budget.*refusing to build"):
        load_trusted(path, "v9")
    assert rss_mib() - before < 50
    many = bomb(tmp_path / "layers", kwargs={"hidden": [4] * 100_000})  # cheap per layer, 100k layers
    with pytest.raises(KdflowError, match="list entries"):
        load_trusted(many, "v10")


def test_spec_bigger_than_its_weights_and_configured_budgets(tmp_path, monkeypatch):
    path = bomb(tmp_path / "mismatch", kwargs={"hidden": [1500, 1500]})  # 2.3 M parameters, 9 MiB, 3 KB file
    with pytest.raises(KdflowError, match="do not match"):
        load_trusted(path, "v3")
    ok = model_dir(tmp_path / "ok")
    load_trusted(ok, "ok")
    monkeypatch.setenv("KDFLOW_MAX_MODEL_PARAMS", "50")
    with pytest.raises(KdflowError, match="KDFLOW_MAX_MODEL_PARAMS"):
        load_trusted(ok, "small budget")
    monkeypatch.setenv("KDFLOW_MAX_MODEL_PARAMS", "lots")
    with pytest.raises(KdflowError, match="is not a number"):
        load_trusted(ok, "bad setting")
    monkeypatch.setenv("KDFLOW_MAX_MODEL_PARAMS", "1000")
    monkeypatch.setenv("KDFLOW_MAX_MODEL_BYTES", "256")  # the model holds 340 bytes
    with pytest.raises(KdflowError, match="KDFLOW_MAX_MODEL_BYTES"):
        load_trusted(ok, "small byte budget")


def test_hugging_face_config_bomb_is_refused_the_same_way(tmp_path):
    pytest.importorskip("transformers")
    config = {"model_type": "vit", "hidden_size": 4096, "num_hidden_layers": 48, "intermediate_size": 16384,
              "num_attention_heads": 32, "image_size": 32, "patch_size": 4, "num_channels": 1}
    path = bomb(tmp_path / "hf", name="hf-image:vit", kwargs={"config": config}, input_shape=[1, 32, 32])
    before = rss_mib()
    with pytest.raises(KdflowError, match="budget"):
        load_trusted(path, "hf")
    assert rss_mib() - before < 400  # importing transformers, not 9.7 G parameters


def test_controller_skips_a_bomb_target_and_it_never_allocates(store):
    good = register_dir(NAME, model_dir(store / "good"))
    v_bomb = register_dir(NAME, bomb(store / "bomb"))
    bad = promote_bad(store, v_bomb)
    before = rss_mib()
    d = controller()._act(Evidence(bad, v_bomb, None, (breach(bad),)))
    assert d.action == "rollback" and d.target == good and "budget" in d.reason, d
    assert rss_mib() - before < 100


# -- 4. an exported program must be a file inside the artifact ---------------------------------------------
@pytest.mark.parametrize("program", ["/etc/hostname", "../outside.pt2", "sub/../../outside.pt2"])
def test_program_outside_the_artifact_is_refused(tmp_path, program):
    (tmp_path / "outside.pt2").write_bytes(b"not a program")
    path = model_dir(tmp_path / "m", name="program:pt2", program=program)
    with pytest.raises(KdflowError, match="outside the model directory"):
        load_trusted(path, "v5")
    from kdflow.models import load_model

    with pytest.raises(KdflowError, match="outside the model directory"):  # not even for the operator's own dirs
        load_model(path)


def test_program_path_inside_the_artifact_is_allowed(tmp_path):
    from kdflow.models import program_file

    assert program_file(tmp_path, {"program": "net/model.pt2"}) == (tmp_path / "net" / "model.pt2").resolve()


# -- 5. an alert is evidence about the model it names only -----------------------------------------------------
def test_alert_about_another_model_with_the_same_version_does_not_roll_back():
    state, policy = State("4", watch_from=0.0), Policy(model_name="student", namespace="prod")
    other = breach("4", model="other-model", namespace="prod")
    elsewhere = breach("4", model="student", namespace="staging")
    d = decide(state, Evidence("4", "3", None, (other, elsewhere), has_data=True), 10.0, policy)
    assert d.action == "none" and "healthy" in d.reason, d
    d = decide(state, Evidence("4", "3", None, (breach("4", model="student", namespace="prod"),)), 10.0, policy)
    assert d.action == "rollback"


def test_server_series_carry_the_model_name():
    text = ServerMetrics("student").render().decode()
    assert "kdflow_model_load_failed" in text
    m = ServerMetrics("student")
    m.request("3", "/predict", 200)
    assert value(m.render().decode(), "kdflow_requests_total", model_name="student", model_version="3") == 1


# -- 7. a champion the servers cannot load is exported; --insecure-no-auth only on loopback -------------------
def test_load_failure_on_the_champion_is_exported_by_cause(store):
    good = register_dir(NAME, model_dir(store / "good"))
    tracking.client().set_registered_model_alias(NAME, tracking.CHAMPION, good)
    metrics = ServerMetrics(NAME)
    swapper = Swapper(Loader(Source("alias", NAME, "champion"), jit=False), 1.0, metrics.serving,
                      metrics.loaded, metrics.refused, metrics.load_failing)
    assert swapper.check() and swapper.current.version == good
    broken = model_dir(store / "broken")
    (broken / "model.pt").write_bytes(b"not a state dict")
    v_broken = register_dir(NAME, broken)
    tracking.client().set_registered_model_alias(NAME, tracking.CHAMPION, v_broken)
    assert not swapper.check() and swapper.current.version == good  # still serving the good one
    failed = "kdflow_model_load_failed"
    assert value(metrics.render().decode(), failed, model_version=v_broken, cause="model") == 1
    v_next = register_dir(NAME, model_dir(store / "next", seed=3))
    tracking.client().set_registered_model_alias(NAME, tracking.CHAMPION, v_next)
    with injected(Rule(method="download", fail=-1)):
        assert not swapper.check()
    text = metrics.render().decode()
    assert value(text, failed, model_version=v_next, cause="registry") == 1 and value(text, failed, cause="model") == 0
    assert swapper.check() and swapper.current.version == v_next  # the registry is back: next poll, no backoff
    assert value(metrics.render().decode(), failed) == 0


@pytest.mark.parametrize(("host", "ok"), [("127.0.0.1", True), ("127.0.0.5", True), ("::1", True),
                                          ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                          ("::", False), ("10.0.0.3", False), ("example.com", False)])
def test_loopback(host, ok):
    assert loopback(host) is ok


def test_insecure_no_auth_is_refused_on_a_public_address(capsys, monkeypatch):
    monkeypatch.delenv("KDFLOW_WEBHOOK_TOKEN", raising=False)
    assert main(["--model-name", "m", "--insecure-no-auth", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--insecure-no-auth only binds a loopback address" in err and len(err.strip().splitlines()) == 1
