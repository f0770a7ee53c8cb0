"""benchmarks/inference_speed.py runs end to end at --dry size and writes its verdict and table."""

import json
import sys

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import inference_speed  # noqa: E402


def test_inference_speed_dry(tmp_path):
    import torch

    threads = torch.get_num_threads()
    try:
        doc = inference_speed.run("dry", tmp_path, False)
    finally:
        torch.set_num_threads(threads)
    saved = json.loads((tmp_path / "inference_speed-dry.json").read_text())
    assert saved["markdown"].startswith("Verdict: ") and saved["machine"]["load_avg_1m"] >= 0
    assert {r["batch"] for r in doc["rows"]} == {1, 256}
    assert all(set(r["samples_per_s"]) == {"eager", "torch", "onnx", "int8"} for r in doc["rows"])
    assert all(r["chosen"] in ("torch", "onnx") for r in doc["rows"])  # int8 is never auto-chosen
    assert set(doc["twin"]) == {"copy A", "copy B"}
