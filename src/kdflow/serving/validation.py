"""Request parsing. Every malformed request becomes a `BadRequest` (a 4xx with a message that says
what was wrong and what is expected); nothing a client sends may turn into a 5xx."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

try:  # a transitive dependency (dvc); strict JSON and ~5x faster. The stdlib is the fallback.
    import orjson

    def loads(body: bytes) -> Any:
        return orjson.loads(body)

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)  # float32 arrays as shortest decimals

    _DECODE_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, RecursionError, UnicodeDecodeError)
except ImportError:  # pragma: no cover
    def loads(body: bytes) -> Any:
        return json.loads(body)

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), default=lambda a: a.tolist()).encode()

    _DECODE_ERRORS = (json.JSONDecodeError, RecursionError, UnicodeDecodeError)

BYTES_PER_NUMBER = 32  # generous: "-1.2345678901234567e-300," is 25 characters


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def body_limit(input_shape: tuple[int, ...], max_items: int) -> int:
    return max_items * math.prod(input_shape) * BYTES_PER_NUMBER + 4096


def check_content_type(value: str | None, required: bool = False) -> None:
    if value is None:
        if required:
            raise BadRequest(415, "Content-Type must be application/json, got none")
        return
    media = value.split(";", 1)[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        raise BadRequest(415, f"Content-Type must be application/json, got '{value[:100]}'")


async def read_body(receive, length: bytes | str | None, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes (by Content-Length first, then as it streams: a
    body too large is never held in memory). Its deadline is the protocol's (`limits.HttpLimits`)."""
    if length is not None:
        length = length.decode("latin-1") if isinstance(length, bytes) else length
        if not length.isdigit():
            raise BadRequest(400, "Content-Length must be a non-negative integer")
        if int(length) > limit:
            raise BadRequest(413, f"body of {length} bytes exceeds the limit of {limit}")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest(400, "client disconnected (or too slow) before the body was complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(body: bytes, example: str) -> Any:
    """Strict JSON, any nesting depth safely (orjson stops at 1024 levels; the stdlib's RecursionError is caught)."""
    if not body:
        raise BadRequest(400, f"empty body; send a JSON object like {example}")
    try:
        return loads(body)
    except _DECODE_ERRORS as exc:
        raise BadRequest(400, f"body is not valid JSON ({str(exc)[:200]}); send a JSON object like {example}") from None


def parse_json_object(body: bytes, example: str) -> dict:
    doc = parse_json(body, example)
    if not isinstance(doc, dict):
        raise BadRequest(422, f"body must be a JSON object like {example}, got {type(doc).__name__}")
    return doc


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def parse_inputs(body: bytes, input_shape: tuple[int, ...], max_items: int) -> np.ndarray:
    """`{"inputs": [...]}` of shape (B, *input_shape) → float32 array, or BadRequest."""
    expected = _shape(("B", *input_shape))  # type: ignore[arg-type]
    doc = parse_json_object(body, '{"inputs": [[...], ...]}')
    extra = sorted(set(doc) - {"inputs"})
    if extra:
        raise BadRequest(422, f"unknown field(s) {', '.join(map(repr, extra))[:200]}; the body holds only 'inputs'")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest(422, f"'inputs' must be a non-empty list of inputs shaped {expected}")
    if len(inputs) > max_items:
        raise BadRequest(413, f"{len(inputs)} inputs in one request; the limit is {max_items}")
    try:
        arr = np.array(inputs)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise BadRequest(422, f"'inputs' must be a rectangular array of numbers shaped {expected}") from None
    if arr.dtype.kind not in "iuf":
        what = {"b": "booleans", "U": "strings", "O": "nulls, objects or integers beyond 64 bits"}.get(
            arr.dtype.kind, str(arr.dtype))
        raise BadRequest(422, f"'inputs' must hold only numbers, found {what}")
    if arr.shape[1:] != input_shape:
        hint = "; wrap a single input in a list" if arr.shape == input_shape else ""
        raise BadRequest(422, f"'inputs' has shape {_shape(arr.shape)}, the model expects {expected}{hint}")
    with np.errstate(over="ignore", invalid="ignore"):
        x = arr.astype(np.float32)
    if not np.isfinite(x).all():
        raise BadRequest(422, "'inputs' must be finite numbers within float32 range (no NaN or Infinity)")
    return x


def parse_feedback(body: bytes) -> tuple[str, list[Any]]:
    """`{"request_id": "...", "label": 3}` (or `"labels": [...]` for a batch request) → (id, labels)."""
    doc = parse_json_object(body, '{"request_id": "...", "label": 3}')
    rid = doc.get("request_id")
    if not isinstance(rid, str) or not rid or len(rid) > 128:
        raise BadRequest(422, "'request_id' must be the non-empty string returned by /predict")
    if ("label" in doc) == ("labels" in doc):
        raise BadRequest(422, "give exactly one of 'label' (one input) or 'labels' (a list, one per input)")
    labels = [doc["label"]] if "label" in doc else doc["labels"]
    if not isinstance(labels, list) or not labels:
        raise BadRequest(422, "'labels' must be a non-empty list")
    for label in labels:
        if isinstance(label, bool) or not isinstance(label, int | str):
            raise BadRequest(422, f"labels must be class indices or class names, got {str(label)[:50]!r}")
    return rid, labels


def parse_texts(body: bytes, tokenizer, max_length: int, pair: bool, pad_id: int, max_items: int) -> np.ndarray:
    """`{"instances": ["a sentence", ...]}` (pairs: `[["first", "second"], ...]`) → token ids (B, max_length)
    int64, padded with `pad_id` (the forward trims the padding again), or BadRequest."""
    shape = '[["first", "second"], ...]' if pair else '["a sentence", ...]'
    doc = parse_json_object(body, f'{{"instances": {shape}}}')
    extra = sorted(set(doc) - {"instances"})
    if extra:
        raise BadRequest(422, f"unknown field(s) {', '.join(map(repr, extra))[:200]}; the body holds only "
                         "'instances'")
    items = doc.get("instances")
    if not isinstance(items, list) or not items:
        raise BadRequest(422, f"'instances' must be a non-empty list: {shape}")
    if len(items) > max_items:
        raise BadRequest(413, f"{len(items)} instances in one request; the limit is {max_items}")
    ok = (lambda v: isinstance(v, list) and len(v) == 2 and all(isinstance(s, str) and s.strip() for s in v)) \
        if pair else (lambda v: isinstance(v, str) and v.strip() != "")
    for i, v in enumerate(items):
        if not ok(v):
            want = "a pair of non-empty strings" if pair else "a non-empty string"
            raise BadRequest(422, f"instance {i} must be {want}, got {str(v)[:50]!r}")
    a = [v[0] for v in items] if pair else items
    b = [v[1] for v in items] if pair else None
    ids = tokenizer(a, b, truncation=True, max_length=max_length, return_attention_mask=False,
                    return_token_type_ids=False)["input_ids"]
    out = np.full((len(ids), max_length), pad_id, np.int64)
    for i, row in enumerate(ids):
        out[i, :len(row)] = row
    return out
