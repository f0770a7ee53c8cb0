"""Model sources: each builds its checkpoint locally (no downloads) and is imported, checked and reloaded."""

import json
import shutil
import zipfile

import pytest
import torch

from kdflow.config import ModelSource
from kdflow.errors import KdflowError
from kdflow.io import sha256_file
from kdflow.models import build_model, load_model, save_model
from kdflow.models.imported import import_model, save_imported
from kdflow.models.mlflow_model import register_model
from kdflow.models.sources import SOURCES, parse
from tests.helpers import tiny_dict

CLASSES = [str(i) for i in range(10)]


def info(shape=(1, 40), classes=CLASSES):
    c = shape[0]
    return {"input_shape": list(shape), "num_classes": len(classes), "classes": list(classes),
            "normalization": {"mean": [0.1] * c, "std": [0.5] * c}}


def src(uri, **kw) -> ModelSource:
    return ModelSource(uri=str(uri), **kw)


def kdflow_dir(tmp_path, name="m", num_classes=10, classes=None, shape=(1, 40)):
    spec = {"name": "cnn1d", "kwargs": {"channels": [4, 4, 4]}, "input_shape": list(shape),
            "num_classes": num_classes, "classes": classes or [str(i) for i in range(num_classes)],
            "mean": [0.2], "std": [0.7]}
    torch.manual_seed(0)
    model = build_model(spec).eval()
    save_model(model, tmp_path / name, spec, role="teacher")
    return tmp_path / name, model


def same(a, b, shape=(1, 40)):
    x = torch.randn(5, *shape)
    with torch.no_grad():
        return torch.allclose(a(x), b(x), atol=1e-5)


def round_trip(model, spec, loaded, tmp_path):
    """Written as a kdflow model dir and loaded back by `load_model`, the model gives the same logits."""
    save_imported(model, spec, loaded, tmp_path / "out", role="teacher")
    back, doc = load_model(tmp_path / "out")
    assert same(model, back, spec["input_shape"])
    return back, doc


def test_registry_lists_every_source_and_parses_bare_paths(tmp_path):
    assert {"kdflow", "models", "runs", "import", "timm", "torchvision", "hf", "pt2", "onnx"} <= set(SOURCES)
    d, _ = kdflow_dir(tmp_path)
    assert parse(str(d))[0].scheme == "kdflow"
    assert parse("x/teacher.onnx")[0].scheme == "onnx"
    assert parse("runs:/abc/model") == (SOURCES["runs"], "runs:/abc/model")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    assert parse(str(tmp_path / "hf"))[0].scheme == "hf"
    (tmp_path / "weights.h5").write_bytes(b"x")
    with pytest.raises(KdflowError, match="unsupported format; use kdflow: .* onnx:"):
        parse(str(tmp_path / "weights.h5"))
    with pytest.raises(KdflowError, match="no such file or directory, and not a known scheme"):
        parse("s3x:/nope")


def test_kdflow_dir_source_keeps_logits_and_records_sha256(tmp_path):
    d, orig = kdflow_dir(tmp_path)
    model, spec, loaded = import_model(src(d), info(), "teacher")
    assert same(model, orig) and spec["mean"] == [0.2]  # the model's own normalization wins over the data's
    assert spec["source"]["sha256"]["model.pt"] == sha256_file(d / "model.pt")
    _, doc = round_trip(model, spec, loaded, tmp_path)
    assert doc["source"]["uri"] == str(d) and doc["name"] == "cnn1d"


def test_import_class_with_pt_and_safetensors_weights(tmp_path):
    from safetensors.torch import save_file

    net = build_model({"name": "mlp", "kwargs": {"hidden": [8]}, "input_shape": [1, 40], "num_classes": 10,
                       "mean": [0.0], "std": [1.0]}).net
    torch.save(net.state_dict(), tmp_path / "w.pt")
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    for w in ("w.pt", "w.safetensors"):
        s = src("import:kdflow.models.archs:MLP", kwargs={"hidden": [8]}, weights=str(tmp_path / w))
        model, spec, loaded = import_model(s, info(), "teacher")
        assert same(model.net, net) and spec["name"] == "import:kdflow.models.archs:MLP"
        assert spec["mean"] == [0.1]  # no normalization of its own: the dataset's
        round_trip(model, spec, loaded, tmp_path)


def test_state_dict_key_and_format_errors_are_clear(tmp_path):
    net = build_model({"name": "mlp", "kwargs": {"hidden": [8]}, "input_shape": [1, 40], "num_classes": 10,
                       "mean": [0.0], "std": [1.0]}).net
    state = net.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["head.bias"]
    torch.save(state, tmp_path / "w.pt")
    s = dict(uri="import:kdflow.models.archs:MLP", kwargs={"hidden": [8]}, weights=str(tmp_path / "w.pt"))
    with pytest.raises(KdflowError, match=r"missing keys \(1\): head.bias; unexpected keys \(1\): extra.weight"):
        import_model(src(**s), info(), "teacher")
    import_model(src(**s, strict=False), info(), "teacher")  # strict: false tolerates them
    torch.save({"head.weight": torch.zeros(3, 8)}, tmp_path / "w.pt")
    with pytest.raises(KdflowError, match=r"shape mismatch \(1\): head.weight \(3, 8\) vs model \(10, 8\)"):
        import_model(src(**s, strict=False), info(), "teacher")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "w.pt")  # a pickled module: weights_only refuses it
    with pytest.raises(KdflowError, match="cannot read weights .* as a state_dict \\(weights_only\\)"):
        import_model(src(**s), info(), "teacher")
    (tmp_path / "w.h5").write_bytes(b"x")
    with pytest.raises(KdflowError, match="unsupported weights format '.h5'"):
        import_model(src(**{**s, "weights": str(tmp_path / "w.h5")}), info(), "teacher")
    with pytest.raises(KdflowError, match="needs `weights`"):
        import_model(src("import:kdflow.models.archs:MLP"), info(), "teacher")


def test_class_count_names_and_input_shape_mismatch(tmp_path):
    d3, _ = kdflow_dir(tmp_path, "three", num_classes=3)
    with pytest.raises(KdflowError, match="class count mismatch: teacher .* outputs 3 classes but the dataset has 10"):
        import_model(src(d3), info(), "teacher")
    named, _ = kdflow_dir(tmp_path, "named", classes=["cat"] + CLASSES[1:])
    with pytest.raises(KdflowError, match="class names mismatch: .*#0: model 'cat' vs data '0'"):
        import_model(src(named), info(), "teacher")
    import_model(src(named, classes=CLASSES), info(), "teacher")  # only the names differ: say so
    d, _ = kdflow_dir(tmp_path)
    with pytest.raises(KdflowError, match="input shape mismatch: teacher .* expects inputs of shape 1×40 .* has 1×32"):
        import_model(src(d), info((1, 32)), "teacher")
    with pytest.raises(KdflowError, match="input shape mismatch: .* cannot take inputs of shape 3×8×8"):
        import_model(src("import:kdflow.models.archs:MLP", kwargs={"input_shape": [1, 40]}, weights=str(
            _mlp_weights(tmp_path))), info((3, 8, 8)), "teacher")


def _mlp_weights(tmp_path):
    net = build_model({"name": "mlp", "kwargs": {}, "input_shape": [1, 40],
                       "num_classes": 10, "mean": [0.0], "std": [1.0]}).net
    torch.save(net.state_dict(), tmp_path / "mlp.pt")
    return tmp_path / "mlp.pt"


def test_mlflow_models_and_runs_uris(tmp_path):
    import mlflow

    from kdflow import tracking
    from kdflow.compress import export_onnx

    d, orig = kdflow_dir(tmp_path)
    export_onnx(orig, tmp_path / "t.onnx", [1, 40])  # the registered student's shadow teacher: an imported ONNX
    save_imported(*import_model(src(tmp_path / "t.onnx"), info(), "teacher"), tmp_path / "onnx-teacher")
    mlflow.set_tracking_uri(tracking.tracking_uri())
    mlflow.set_experiment("sources-test")
    with mlflow.start_run() as run:
        version = register_model(d, "src-teacher", teacher_dir=tmp_path / "onnx-teacher")
    tracking.client().set_registered_model_alias("src-teacher", "gold", version)
    for uri in ("models:/src-teacher@gold", f"runs:/{run.info.run_id}/model"):
        model, spec, _ = import_model(src(uri), info(), "teacher")
        assert same(model, orig) and spec["source"]["sha256"]["model.pt"] == sha256_file(d / "model.pt"), uri
    shadow, _ = load_model(tracking.download_model(f"runs:/{run.info.run_id}/teacher", tmp_path / "dl"))
    assert same(shadow, orig)  # the program file was logged beside model.json
    with pytest.raises(KdflowError, match="is an exported program; import it from its file"):
        import_model(src(f"runs:/{run.info.run_id}/teacher"), info(), "teacher")
    with pytest.raises(KdflowError, match="cannot fetch model models:/src-teacher@nope"):
        import_model(src("models:/src-teacher@nope"), info(), "teacher")


def _export_pt2(model, path, shape=(1, 40)):
    ep = torch.export.export(model.eval(), (torch.zeros(2, *shape),),
                             dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, str(path))


def test_exported_program_and_onnx_teachers(tmp_path):
    from kdflow.compress import export_onnx

    d, orig = kdflow_dir(tmp_path)  # a teacher whose Python code is "gone": only its graph is shipped
    _export_pt2(orig, tmp_path / "t.pt2")
    export_onnx(orig, tmp_path / "t.onnx", [1, 40])
    for f in ("t.pt2", "t.onnx"):
        model, spec, loaded = import_model(src(tmp_path / f), info(), "teacher")
        assert same(model, orig) and spec["mean"] == [0.0] and spec["program"] == "model" + f[1:]
        assert spec["source"]["program"] and spec["source"]["sha256"][f] == sha256_file(tmp_path / f)
        back, doc = round_trip(model, spec, loaded, tmp_path / f.replace(".", "_"))
        assert doc["params"] > 0 and list(back.state_dict()) == ["mean", "std"]  # weights stay in the program
    with pytest.raises(KdflowError, match="class count mismatch"):
        import_model(src(tmp_path / "t.onnx"), info(classes=CLASSES[:5]), "teacher")
    with pytest.raises(KdflowError, match="expects inputs of shape 1×40"):
        import_model(src(tmp_path / "t.pt2"), info((1, 20)), "teacher")


def test_pt2_with_pickled_payload_is_refused(tmp_path):
    d, orig = kdflow_dir(tmp_path)
    _export_pt2(orig, tmp_path / "t.pt2")
    with zipfile.ZipFile(tmp_path / "t.pt2") as z, zipfile.ZipFile(tmp_path / "bad.pt2", "w") as out:
        for item in z.infolist():
            data = z.read(item)
            if item.filename.endswith("weights_config.json"):
                conf = json.loads(data)
                next(iter(conf["config"].values()))["use_pickle"] = True
                data = json.dumps(conf).encode()
            out.writestr(item, data)
    with pytest.raises(KdflowError, match="is a pickled object; kdflow loads only plain tensors"):
        import_model(src(tmp_path / "bad.pt2"), info(), "teacher")
    shutil.copy(tmp_path / "t.pt2", tmp_path / "t.txt")
    with pytest.raises(KdflowError, match="unsupported format"):
        import_model(src(tmp_path / "t.txt"), info(), "teacher")


@pytest.mark.parametrize("override, match", [
    ({"soft_targets.mode": "online"}, "exported program without Python modules: it can only give offline"),
    ({"distill.features": [{"student": "features.0", "teacher": "features.0"}]}, "only give offline soft targets"),
    ({"student.init_from": {"uri": "s.onnx"}}, "student.init_from 's.onnx' is an exported program: it cannot be"),
    ({"student.source": {"uri": "x"}}, "the student is always trained; .* student.init_from"),
    ({"teacher.model": None, "teacher.source": None}, "teacher needs model .*, source .* or init_from"),
    ({"teacher.source": {"uri": "timmm:resnet18"}}, "teacher.source: unknown model source scheme 'timmm:'"),
    ({"teacher.source": {"uri": "timm:resnet18"}}, "teacher.source: 'timm:resnet18' needs weights"),
])
def test_config_checks_sources(override, match):
    from kdflow.config import validate

    raw = tiny_dict(teacher__source={"uri": "t.pt2"})
    for k, v in override.items():
        from kdflow.config import set_key

        set_key(raw, k, v)
    with pytest.raises(KdflowError, match=match):
        validate(raw)
