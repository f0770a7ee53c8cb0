"""Prometheus metrics of the model server (`kdflow_` prefix, base units, `model_name` and `model_version`
labels: the model's identity, so rules and the controller never mix two models' versions).

Label children are resolved once per served version (`VersionMetrics`), so the request path pays
an `inc`/`observe`, not a label lookup. `--no-metrics` swaps in no-op objects with the same methods;
the benchmark compares the two to price the instrumentation.
"""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kdflow.serving.source import Served

LATENCY_BUCKETS = (.001, .0025, .005, .0075, .01, .015, .02, .025, .035, .05, .075, .1, .25, .5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
CONFIDENCE_BUCKETS = (.1, .2, .3, .4, .5, .6, .7, .8, .85, .9, .95, .98, .99, 1.0)
PREDICT = "/predict"


class VersionMetrics:
    def __init__(self, m: ServerMetrics, version: str, classes: list[str]):
        n = m.model_name
        self._ok = m.requests.labels(n, version, PREDICT, "200")
        self._latency = m.latency.labels(n, version, PREDICT)
        self._batch = m.batch_size.labels(n, version)
        self._confidence = m.confidence.labels(n, version)
        self._classes = [m.predictions.labels(n, version, c) for c in classes]  # zero series: drift sees unseen ones
        self._agree = m.shadow.labels(n, version, "agree")
        self._disagree = m.shadow.labels(n, version, "disagree")
        self._dropped = m.shadow_dropped.labels(n, version)
        self._correct = m.feedback.labels(n, version, "correct")
        self._incorrect = m.feedback.labels(n, version, "incorrect")

    def predicted(self, seconds: float) -> None:
        self._ok.inc()
        self._latency.observe(seconds)

    def batch(self, confidence: np.ndarray, index: np.ndarray) -> None:
        self._batch.observe(len(index))
        for c in confidence.tolist():
            self._confidence.observe(c)
        if len(index) == 1:  # the common case at low load: skip the bincount
            self._classes[int(index[0])].inc()
            return
        for k, n in enumerate(np.bincount(index, minlength=len(self._classes)).tolist()):
            if n:
                self._classes[k].inc(n)

    def shadow(self, agree: int, disagree: int) -> None:
        self._agree.inc(agree)
        self._disagree.inc(disagree)

    def shadow_dropped(self) -> None:
        self._dropped.inc()

    def feedback(self, correct: int, incorrect: int) -> None:
        self._correct.inc(correct)
        self._incorrect.inc(incorrect)


class ServerMetrics:
    enabled = True

    def __init__(self, model_name: str = "") -> None:
        self.registry = r = CollectorRegistry()
        self.model_name = model_name
        v = ["model_name", "model_version"]
        self.requests = Counter("kdflow_requests", "HTTP requests by endpoint and status code",
                                [*v, "endpoint", "code"], registry=r)
        self.latency = Histogram("kdflow_request_duration_seconds", "Server-side request latency",
                                 [*v, "endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("kdflow_batch_size", "Rows per forward pass (micro-batch size)", v,
                                    buckets=BATCH_BUCKETS, registry=r)
        self.confidence = Histogram("kdflow_prediction_confidence", "Max class probability per prediction", v,
                                    buckets=CONFIDENCE_BUCKETS, registry=r)
        self.predictions = Counter("kdflow_predictions", "Predictions by predicted class", [*v, "class"], registry=r)
        self.shadow = Counter("kdflow_shadow_comparisons", "Shadow teacher comparisons by result (agree/disagree)",
                              [*v, "result"], registry=r)
        self.shadow_dropped = Counter("kdflow_shadow_dropped", "Sampled requests dropped: shadow queue full",
                                      v, registry=r)
        self.feedback = Counter("kdflow_feedback", "Ground-truth feedback by result (correct/incorrect)",
                                [*v, "result"], registry=r)
        self.model_info = Gauge("kdflow_model_info", "The served model version (1 = serving now)",
                                [*v, "arch", "teacher"], registry=r)
        self.ref_agreement = Gauge("kdflow_reference_teacher_agreement",
                                   "Teacher agreement measured at evaluation", v, registry=r)
        self.ref_confidence = Gauge("kdflow_reference_confidence_mean",
                                    "Mean confidence measured at evaluation", v, registry=r)
        self.ref_share = Gauge("kdflow_reference_class_share", "Predicted class share measured at evaluation",
                               [*v, "class"], registry=r)
        self.loads = Counter("kdflow_model_loads", "Model load attempts by result", ["result"], registry=r)
        self._failed_now: tuple[str, str] | None = None
        self.load_failed = Gauge("kdflow_model_load_failed", "1 while the model source points at a version this "
                                 "server cannot load (cause: model = its files are refused or broken, registry = "
                                 "the registry could not be read); it keeps serving the previous one",
                                 [*v, "cause"], registry=r)
        self.swap_refusals = Counter("kdflow_swap_refusals", "Versions refused at swap time: contract differs from "
                                     "the served one (input_shape, input_dtype, output_size, classes)",
                                     [*v, "reason"], registry=r)
        self._refused_now: str | None = None
        self.swap_refused = Gauge("kdflow_swap_refused", "1 while the model source points at a version this server "
                                  "refused (it keeps serving the previous one)", v, registry=r)

    def for_version(self, served: Served) -> VersionMetrics:
        return VersionMetrics(self, served.version, served.classes)

    def request(self, version: str, endpoint: str, code: int) -> None:
        self.requests.labels(self.model_name, version, endpoint, str(code)).inc()

    def loaded(self, result: str) -> None:
        self.loads.labels(result).inc()

    def refused(self, version: str | None, reason: str, new: bool) -> None:
        if new:
            self.swap_refusals.labels(self.model_name, version, reason).inc()
        if version != self._refused_now:  # called every poll: touch the gauge only when it changes
            self.swap_refused.clear()
            if version is not None:
                self.swap_refused.labels(self.model_name, version).set(1)
            self._refused_now = version

    def load_failing(self, version: str | None, cause: str) -> None:
        """The version the source points at and this server failed to load (None: it loads or is served)."""
        now = (version, cause) if version is not None else None
        if now != self._failed_now:
            self.load_failed.clear()
            if now is not None:
                self.load_failed.labels(self.model_name, version, cause).set(1)
            self._failed_now = now

    def serving(self, served: Served) -> None:
        """Point model info and reference gauges at the version now served (the old series go away)."""
        for gauge in (self.model_info, self.ref_agreement, self.ref_confidence, self.ref_share):
            gauge.clear()
        ref, v, n = served.reference, served.version, self.model_name
        self.model_info.labels(n, v, served.arch, served.teacher_uri or "").set(1)
        if ref.teacher_agreement is not None:
            self.ref_agreement.labels(n, v).set(ref.teacher_agreement)
        if ref.confidence_mean is not None:
            self.ref_confidence.labels(n, v).set(ref.confidence_mean)
        for cls, share in ref.class_share.items():
            self.ref_share.labels(n, v, cls).set(share)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _NullVersion:
    def predicted(self, seconds: float) -> None: ...
    def batch(self, confidence, index) -> None: ...
    def shadow(self, agree: int, disagree: int) -> None: ...
    def shadow_dropped(self) -> None: ...
    def feedback(self, correct: int, incorrect: int) -> None: ...


class NullMetrics:
    """`--no-metrics`: same interface, no work."""

    enabled = False
    _version = _NullVersion()

    def for_version(self, served: Served) -> _NullVersion:
        return self._version

    def request(self, version: str, endpoint: str, code: int) -> None: ...
    def loaded(self, result: str) -> None: ...
    def refused(self, version: str | None, reason: str, new: bool) -> None: ...
    def load_failing(self, version: str | None, cause: str) -> None: ...
    def serving(self, served: Served) -> None: ...
    def render(self) -> bytes:
        return b""
