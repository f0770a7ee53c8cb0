"""A minimal client of the Prometheus HTTP API (instant queries)."""

from __future__ import annotations

import httpx


class PrometheusError(Exception):
    """Prometheus could not answer: unreachable, HTTP error, or a query error."""


class Prometheus:
    def __init__(self, url: str, timeout_s: float = 5.0):
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """Instant vector query → [(labels, value)]."""
        try:
            r = self._http.get("/api/v1/query", params={"query": promql})
        except httpx.HTTPError as exc:
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {exc!r}") from None
        try:
            body = r.json()
        except ValueError:
            raise PrometheusError(f"Prometheus at {self.url} answered HTTP {r.status_code} without JSON") from None
        if r.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"query {promql!r} failed (HTTP {r.status_code}): {body.get('error', body)}")
        data = body.get("data", {})
        if data.get("resultType") != "vector":
            raise PrometheusError(f"query {promql!r} returned a {data.get('resultType')}, not an instant vector")
        return [(dict(s["metric"]), float(s["value"][1])) for s in data.get("result", [])]
