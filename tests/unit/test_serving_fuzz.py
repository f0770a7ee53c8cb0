"""Fuzz: 2,000 malformed requests (4 strategies x 500) against the in-process server get 4xx
answers with a message, never a 5xx, and the server keeps answering. Valid-by-accident bodies
may get a 200."""

import json
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from kdflow.models import build_model, save_model
from kdflow.serving.app import create_app
from kdflow.serving.config import ServeConfig

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
FUZZ = settings(max_examples=500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    torch.manual_seed(0)
    spec = {"name": "mlp", "kwargs": {"hidden": [4]}, "input_shape": [2, 3], "num_classes": 3, "mean": [0.0, 0.0],
            "std": [1.0, 1.0]}
    path = tmp_path_factory.mktemp("fuzz") / "m"
    save_model(build_model(spec), path, spec)
    with TestClient(create_app(ServeConfig(model=str(path), teacher=str(path), shadow_rate=0.5,
                                           max_request_items=8))) as c:
        yield c


def check(response, allow_ok: bool = True) -> None:
    ok = {200} if allow_ok else set()
    assert response.status_code in ok or 400 <= response.status_code < 500, (response.status_code, response.text)
    if response.status_code != 200:
        assert response.json()["error"]  # a message, not an empty 4xx


numbers = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.none(), st.text(max_size=3))
json_values = st.recursive(numbers | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3),
                           max_leaves=30)
near_miss = st.recursive(st.floats(-1e6, 1e6) | numbers, lambda inner: st.lists(inner, min_size=0, max_size=4),
                         max_leaves=60)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_random_bytes(client, raw):
    check(client.post("/predict", content=raw, headers={"content-type": "application/json"}), allow_ok=False)


@FUZZ
@given(doc=json_values)
def test_random_json(client, doc):
    check(client.post("/predict", content=json.dumps(doc, allow_nan=True).encode(),
                      headers={"content-type": "application/json"}), allow_ok=False)


@FUZZ
@given(inputs=near_miss, extra=st.dictionaries(st.sampled_from(["inputs", "x", "label"]), json_values, max_size=1))
def test_almost_valid_inputs(client, inputs, extra):
    body = {"inputs": inputs, **{k: v for k, v in extra.items() if k != "inputs"}}
    check(client.post("/predict", content=json.dumps(body, allow_nan=True).encode(),
                      headers={"content-type": "application/json"}))


@FUZZ
@given(doc=json_values, content_type=st.sampled_from(["application/json", "text/plain", "", "application/x+json",
                                                      "multipart/form-data; boundary=x"]))
def test_random_feedback(client, doc, content_type):
    headers = {"content-type": content_type} if content_type else {}
    check(client.post("/feedback", content=json.dumps(doc, allow_nan=True).encode(), headers=headers),
          allow_ok=False)


def test_server_still_predicts_after_the_fuzz(client):
    assert client.get("/healthz").status_code == 200
    r = client.post("/predict", json={"inputs": [[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]]})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1
