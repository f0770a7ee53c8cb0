"""The model server in-process (ASGI): routes, metrics, shadow teacher, feedback, hot swap."""

import asyncio
import os
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from kdflow.models import build_model, save_model
from kdflow.serving.app import create_app
from kdflow.serving.config import ServeConfig, parse_args
from kdflow.serving.source import Loader, Source

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
CLASSES = ["cat", "dog", "emu"]


def make_model(path: Path, seed: int, **extra) -> Path:
    torch.manual_seed(seed)
    spec = {"name": "mlp", "kwargs": {"hidden": [8]}, "input_shape": [1, 6], "num_classes": 3, "mean": [0.0],
            "std": [1.0], "classes": CLASSES, **extra}
    save_model(build_model(spec), path, spec)
    return path


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    ref = {"teacher_agreement": 0.97, "confidence_mean": 0.8, "class_share": {"0": 0.5, "1": 0.3, "2": 0.2}}
    student = make_model(root / "student", 0, version="7", reference=ref)
    teacher = make_model(root / "teacher", 0)  # same weights: agrees on everything
    other = make_model(root / "other", 1, version="8")
    return student, teacher, other


def metrics(client) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            out[(s.name, *sorted(s.labels.items()))] = s.value
    return out


def value(samples: dict, name: str, **labels) -> float:
    return sum(v for k, v in samples.items() if k[0] == name and all((lk, lv) in k[1:] for lk, lv in labels.items()))


def x(n: int = 1):
    return [[[0.1 * i - 0.2 * j for i in range(6)]] for j in range(n)]


def test_predict_feedback_metrics_and_shadow(dirs):
    student, teacher, _ = dirs
    app = create_app(ServeConfig(model=str(student), teacher=str(teacher), shadow_rate=1.0, feedback_capacity=2))
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz").json()
        assert ready["ready"] and ready["model_version"] == "7"
        r = c.post("/predict", json={"inputs": x(3)})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["model_version"] == "7" and r.headers["x-request-id"] == doc["request_id"]
        assert len(doc["predictions"]) == 3
        for p in doc["predictions"]:
            assert p["class"] == CLASSES[p["class_index"]]
            assert abs(sum(p["probabilities"]) - 1) < 1e-4 and len(p["probabilities"]) == 3

        truth = [p["class"] for p in doc["predictions"]]
        truth[0] = CLASSES[(doc["predictions"][0]["class_index"] + 1) % 3]  # one wrong
        bad = c.post("/feedback", json={"request_id": doc["request_id"], "labels": truth[:2]})
        assert bad.status_code == 422 and "2 label(s) for a request of 3" in bad.json()["error"]
        fb = c.post("/feedback", json={"request_id": doc["request_id"], "labels": truth})
        assert fb.json() == {"request_id": doc["request_id"], "model_version": "7", "correct": 2, "incorrect": 1}
        again = c.post("/feedback", json={"request_id": doc["request_id"], "labels": truth})
        assert again.status_code == 404  # scored once only

        ids = [c.post("/predict", json={"inputs": x()}).json()["request_id"] for _ in range(3)]
        assert c.post("/feedback", json={"request_id": ids[0], "label": 0}).status_code == 404  # evicted (capacity 2)
        assert c.post("/feedback", json={"request_id": ids[2], "label": 5}).status_code == 422
        assert c.post("/feedback", json={"request_id": ids[2], "label": "emu"}).status_code == 200

        deadline = time.monotonic() + 10
        while value(metrics(c), "kdflow_shadow_comparisons_total") < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        m = metrics(c)
        v = {"model_version": "7"}
        assert value(m, "kdflow_requests_total", code="200", endpoint="/predict", **v) == 4
        assert value(m, "kdflow_request_duration_seconds_count", endpoint="/predict", **v) == 4
        assert value(m, "kdflow_batch_size_sum", **v) == 6
        assert value(m, "kdflow_prediction_confidence_count", **v) == 6
        assert value(m, "kdflow_predictions_total", **v) == 6
        assert len([k for k in m if k[0] == "kdflow_predictions_total"]) == 3  # every class has a series
        assert value(m, "kdflow_shadow_comparisons_total", result="agree", **v) == 6
        assert value(m, "kdflow_shadow_comparisons_total", result="disagree", **v) == 0
        assert value(m, "kdflow_feedback_total", result="correct", **v) == 3
        assert value(m, "kdflow_feedback_total", result="incorrect", **v) == 1
        assert value(m, "kdflow_model_info", arch="mlp", **v) == 1
        assert value(m, "kdflow_reference_teacher_agreement", **v) == 0.97
        assert value(m, "kdflow_reference_confidence_mean", **v) == 0.8
        assert value(m, "kdflow_reference_class_share", **{"class": "dog"}, **v) == 0.3
        assert value(m, "kdflow_requests_total", code="404", endpoint="/feedback") == 2


def test_http_edges_are_4xx(dirs):
    student, _, _ = dirs
    with TestClient(create_app(ServeConfig(model=str(student), max_request_items=4))) as c:
        assert c.get("/predict").status_code == 405
        assert c.get("/nope").status_code == 404
        r = c.post("/predict", content=b"{}" + b" " * 10_000_000, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "limit" in r.json()["error"]
        r = c.post("/predict", content=b'{"inputs": []}', headers={"content-type": "text/csv"})
        assert r.status_code == 415
        r = c.post("/predict", json={"inputs": x(5)})
        assert r.status_code == 413 and "limit is 4" in r.json()["error"]


def test_responses_over_real_uvicorn_leave_in_one_write(dirs):
    """Status line + headers wait for the body (one syscall); 100 Continue and keep-alive still work."""
    import socket

    from kdflow.serving.limits import _OneWrite
    from tests.support.live import serve

    class Recorder:
        def __init__(self):
            self.writes, self.closed = [], False

        def write(self, data):
            self.writes.append(data)

        def close(self):
            self.closed = True

        def is_closing(self):
            return self.closed

    t = Recorder()
    w = _OneWrite(t)
    w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    w.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert t.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]  # the head waits for the body
    w.write(b"{}")
    assert t.writes[1:] == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
    t2 = Recorder()
    w2 = _OneWrite(t2)
    w2.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    w2.close()  # no body came: the head still leaves before the connection closes
    assert t2.writes == [b"HTTP/1.1 500 Internal Server Error\r\n\r\n"] and t2.closed

    student, _, _ = dirs
    with serve(create_app(ServeConfig(model=str(student)))) as base:
        body = b'{"inputs": [[[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]]]}'
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            for expect in (b"", b"Expect: 100-continue\r\n"):  # two requests on one keep-alive connection
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + expect
                             + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                got = b""
                while b'"predictions"' not in got or not got.rstrip().endswith(b"}"):
                    got += sock.recv(65536)
                assert b"200 OK" in got and b"x-request-id" in got
        with httpx.Client() as c:
            assert c.get(base + "/healthz").json() == {"status": "ok"}


def test_no_metrics_mode(dirs):
    student, _, _ = dirs
    with TestClient(create_app(ServeConfig(model=str(student), metrics=False))) as c:
        assert c.post("/predict", json={"inputs": x()}).status_code == 200
        assert c.get("/metrics").status_code == 404


def test_cli_arguments_are_validated(dirs, capsys):
    from kdflow.serving.app import main

    assert main(["--model", str(dirs[0]), "--shadow-rate", "2"]) == 2
    assert "must be within [0, 1]" in capsys.readouterr().err
    assert main(["--model", "/does/not/exist"]) == 2
    assert "has no model.json" in capsys.readouterr().err
    assert main(["--model", "models:/bad/uri/x"]) == 2
    assert parse_args(["--model", "m", "--no-metrics"]).metrics is False


class Flipper(Loader):
    """A source whose version is set by the test (stands in for an alias being moved)."""

    def __init__(self, paths: dict[str, Path]):
        super().__init__(Source("alias", "flipper", "champion"), warm_rows=8)
        self.paths = paths
        self.version = "7"

    def resolve(self) -> str:
        return self.version

    def load(self, version: str):
        return self._finish(*_load(self.paths[version]), "flipper", version, {}, None, None)


def _load(path):
    from kdflow.models import load_model

    return load_model(path)


def test_hot_swap_under_concurrent_load_fails_nothing(dirs):
    student, _, other = dirs
    app = create_app(ServeConfig(model=str(student), max_wait_ms=1.0))
    server = app.state.server
    flipper = Flipper({"7": student, "8": other})
    server.swapper.loader = flipper

    async def scenario():
        async with server.lifespan(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                stop = asyncio.Event()
                seen, statuses = [], []

                async def user():
                    while not stop.is_set():
                        r = await client.post("/predict", json={"inputs": x(2)})
                        statuses.append(r.status_code)
                        if r.status_code == 200:
                            seen.append(r.json()["model_version"])

                def flip():
                    for i in range(6):
                        flipper.version = "8" if i % 2 == 0 else "7"
                        assert server.swapper.check()
                        time.sleep(0.05)

                users = [asyncio.create_task(user()) for _ in range(16)]
                await asyncio.to_thread(flip)
                await asyncio.sleep(0.1)
                stop.set()
                await asyncio.gather(*users)
                return seen, statuses

    seen, statuses = asyncio.run(scenario())
    assert statuses and set(statuses) == {200}
    assert {"7", "8"} <= set(seen)
    assert server.swapper.current.version == "7"


def test_swap_failure_keeps_serving_the_current_version(dirs, tmp_path):
    student, _, _ = dirs
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text("{}")
    app = create_app(ServeConfig(model=str(student)))
    flipper = Flipper({"7": student, "9": broken})
    app.state.server.swapper.loader = flipper
    flipper.version = "9"
    assert app.state.server.swapper.check() is False
    with TestClient(app) as c:
        assert c.post("/predict", json={"inputs": x()}).json()["model_version"] == "7"
        assert value(metrics(c), "kdflow_model_loads_total", result="error") == 1


def test_swapper_thread_is_stoppable(dirs):
    student, _, _ = dirs
    app = create_app(ServeConfig(model=str(student), alias_poll_s=0.05))
    app.state.server.swapper.loader = Flipper({"7": student})
    with TestClient(app):
        assert any(t.name == "kdflow-swapper" for t in threading.enumerate())
    assert not app.state.server.swapper._thread.is_alive()
