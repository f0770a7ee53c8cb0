"""Request parsing: every malformed body is a 4xx with a message naming the problem."""

import json

import numpy as np
import pytest

from kdflow.serving.validation import BadRequest, body_limit, check_content_type, parse_feedback, parse_inputs

SHAPE = (1, 4)


def body(obj) -> bytes:
    return json.dumps(obj).encode()


def test_valid_batch_becomes_float32():
    x = parse_inputs(body({"inputs": [[[1, 2, 3, 4]], [[0.5, -1, 2e3, 0]]]}), SHAPE, 8)
    assert x.dtype == np.float32 and x.shape == (2, 1, 4)


@pytest.mark.parametrize("raw, status, words", [
    (b"", 400, "empty body"),
    (b"{", 400, "not valid JSON"),
    (b"\xff\xfe", 400, "not valid JSON"),
    (b"[1, 2]", 422, "JSON object"),
    (body({"input": [[[1, 2, 3, 4]]]}), 422, "unknown field"),
    (body({"inputs": []}), 422, "non-empty list"),
    (body({"inputs": 3}), 422, "non-empty list"),
    (body({"inputs": [[[1, 2, 3]]]}), 422, "shape (1, 1, 3)"),
    (body({"inputs": [[1, 2, 3, 4]]}), 422, "expects (B, 1, 4)"),
    (body({"inputs": [[[1, 2, 3, 4]], [[1, 2]]]}), 422, "rectangular"),
    (body({"inputs": [[["a", "b", "c", "d"]]]}), 422, "strings"),
    (body({"inputs": [[[True, False, True, True]]]}), 422, "booleans"),
    (body({"inputs": [[[None, 1, 2, 3]]]}), 422, "nulls"),
    (body({"inputs": [[[{"a": 1}, 1, 2, 3]]]}), 422, "nulls, objects"),
    (body({"inputs": [[[1e39, 0, 0, 0]]]}), 422, "finite"),
    (b'{"inputs": [[[NaN, 0, 0, 0]]]}', None, None),  # NaN is not JSON; either parser rejects it
    (body({"inputs": [[[1, 2, 3, 4]]] * 9}), 413, "limit is 8"),
    (b'{"inputs": ' + b"[" * 3000 + b"]" * 3000 + b"}", None, None),
])
def test_malformed_bodies_are_4xx_with_a_reason(raw, status, words):
    with pytest.raises(BadRequest) as err:
        parse_inputs(raw, SHAPE, 8)
    assert 400 <= err.value.status < 500
    if status is not None:
        assert err.value.status == status
        assert words in err.value.message


def test_a_single_unbatched_input_gets_a_hint():
    with pytest.raises(BadRequest, match="wrap a single input in a list"):
        parse_inputs(body({"inputs": [[1, 2, 3, 4]]}), SHAPE, 8)


def test_content_type():
    check_content_type(None)
    check_content_type("application/json; charset=utf-8")
    check_content_type("application/vnd.api+json")
    with pytest.raises(BadRequest) as err:
        check_content_type("text/plain")
    assert err.value.status == 415


def test_body_limit_scales_with_input():
    assert body_limit((1, 40), 10) < body_limit((1, 28, 28), 10)


def test_feedback_parsing():
    assert parse_feedback(body({"request_id": "abc", "label": 3})) == ("abc", [3])
    assert parse_feedback(body({"request_id": "abc", "labels": ["cat", 1]})) == ("abc", ["cat", 1])
    for bad in ({"label": 1}, {"request_id": "", "label": 1}, {"request_id": "a"},
                {"request_id": "a", "label": 1, "labels": [1]}, {"request_id": "a", "label": 1.5},
                {"request_id": "a", "label": True}, {"request_id": "a", "labels": []}):
        with pytest.raises(BadRequest) as err:
            parse_feedback(body(bad))
        assert err.value.status == 422
