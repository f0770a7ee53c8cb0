"""A KFP run through the backend's v2beta1 REST API (kfp.Client): follow it to its final state and name
the task that failed with its message. `kdflow pipeline submit --wait` and the exit handler use it.

Not kfp.Client.wait_for_run_completion: its final states leave out CANCELED (a canceled run would be
waited on until the timeout) and it reports nothing about tasks.
"""

from __future__ import annotations

import os
import time
from typing import Any

from kdflow.errors import KdflowError

FINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"})  # V2beta1RuntimeState's ends
API_ENV = "KDFLOW_KFP_API"  # the exit handler's endpoint (default: kfp.Client's in-cluster ml-pipeline)


def client(host: str | None, namespace: str | None = None):
    """kfp.Client with KFP_TOKEN as a bearer token when set (e.g. `kubectl create token`), else the
    client's own discovery (in a pod: the projected service-account token)."""
    import kfp

    return kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=os.environ.get("KFP_TOKEN"))


def state(run) -> str:
    return str(run.state or "PENDING").upper()


def failed_tasks(run) -> list[dict[str, str]]:
    """The failed tasks that have no failed task under them (the step, not the DAGs around it):
    [{'task', 'message', 'pod'}], container tasks first."""
    details = (run.run_details.task_details if run.run_details else None) or []
    failed = [t for t in details if str(t.state or "").upper() == "FAILED"]
    parents = {t.parent_task_id for t in failed if t.parent_task_id}
    leaves = [t for t in failed if t.task_id not in parents]
    leaves.sort(key=lambda t: not t.pod_name)
    return [{"task": t.display_name or t.task_id or "", "message": (t.error.message if t.error else "") or "",
             "pod": t.pod_name or ""} for t in leaves]


def reason(exc: BaseException) -> str:
    """One line of an API client error: the server's own message for an HTTP error (kfp_server_api's
    ApiException carries the whole response), else the first line of the error."""
    import json

    status, body = getattr(exc, "status", None), getattr(exc, "body", None)
    if status and body:
        try:
            doc = json.loads(body)
            message = doc.get("message") or doc.get("error") or body
        except (ValueError, AttributeError):
            message = body
        return f"HTTP {status}: {str(message).strip()[:500]}"
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def describe(tasks: list[dict[str, str]]) -> str:
    return "; ".join(f"{t['task']}: {t['message'] or 'no message'}" + (f" (pod {t['pod']})" if t["pod"] else "")
                     for t in tasks)


def wait(kfp_client, run_id: str, timeout: float, poll: float = 10, log=print) -> dict[str, Any]:
    """Poll the run until it ends; {'state', 'failed_tasks', 'error'}. Past `timeout` seconds: an error
    (the run itself goes on)."""
    deadline, last = time.monotonic() + timeout, None
    while True:
        run = kfp_client.get_run(run_id)
        now = state(run)
        if now != last:
            log(f"run {run_id}: {now}")
            last = now
        if now in FINAL:
            error = (run.error.message if run.error else "") or ""
            return {"state": now, "failed_tasks": failed_tasks(run), "error": error}
        if time.monotonic() > deadline:
            raise KdflowError(f"run {run_id} is still {now} after {timeout:g}s (it keeps running; "
                              "follow it in the KFP UI)")
        time.sleep(poll)


def lookup(run_id: str, timeout: float = 10) -> dict[str, Any]:
    """The run's state and failed tasks, read from the API where this process runs (the exit handler's
    pod); {'lookup_error': why} when the API cannot be reached or refuses (no token, no permission)."""
    if not run_id or run_id.startswith("{{"):
        return {"lookup_error": "no KFP run id (not on a KFP backend)"}
    import socket

    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # kfp.Client sets none: the record must not hang on a dead API
    try:
        run = client(os.environ.get(API_ENV)).get_run(run_id)
    except Exception as exc:  # unreachable, 401/403, unknown run: the record says so instead of failing
        return {"lookup_error": reason(exc)}
    finally:
        socket.setdefaulttimeout(before)
    return {"state": state(run), "failed_tasks": failed_tasks(run), "error": (run.error.message if run.error else "")}
