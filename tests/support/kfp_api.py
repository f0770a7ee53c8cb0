"""A stand-in KFP API server for tests: real HTTP on 127.0.0.1, the v2beta1 REST shapes kfp.Client
(kfp_server_api) speaks, and the two server-side checks that matter to kdflow: an upload is parsed
strictly with the protobuf schemas of the configured backend release (tests/support/kfp_backend: 400
on an unknown field, as the API server refuses it), and a multi-user server refuses a pipeline without
a namespace (a shared pipeline, which a profile user may not create). Runs step through `states`, one
per GET, and a failed run carries task details like the backend's."""

from __future__ import annotations

import itertools
import json
import tempfile
import threading
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from tests.support.kfp_backend import problems

FAILED_TASKS = [
    {"task_id": "t-root", "display_name": "kdflow-distillation", "state": "FAILED"},
    {"task_id": "t-exit", "display_name": "exit-handler-1", "state": "FAILED", "parent_task_id": "t-root"},
    {"task_id": "t-prep", "display_name": "prepare", "state": "SUCCEEDED", "parent_task_id": "t-exit",
     "pod_name": "kdflow-distillation-x-prepare-1"},
    {"task_id": "t-dist", "display_name": "distill", "state": "FAILED", "parent_task_id": "t-exit",
     "pod_name": "kdflow-distillation-x-distill-2",
     "error": {"code": 2, "message": "KdflowError: distill.temperature must be > 0"}},
]


class FakeKFP:
    def __init__(self, release: str = "2.17.0", multi_user: bool = False, states=("PENDING", "RUNNING", "SUCCEEDED")):
        self.release, self.multi_user, self.states = release, multi_user, list(states)
        self.pipelines: list[dict] = []
        self.versions: dict[str, list[dict]] = {}
        self.experiments: list[dict] = []
        self.runs: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, query)
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKFP:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"

    def add_run(self, states, tasks=None) -> str:
        run_id = self._id("run")
        self.runs[run_id] = {"states": list(states), "seen": 0, "tasks": tasks, "run": {"run_id": run_id}}
        return run_id

    # -- the API --------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict, body: bytes, ctype: str) -> tuple[int, dict]:
        q = {k: v[0] for k, v in query.items()}
        self.requests.append((method, path, q))
        base = "/apis/v2beta1/"
        route = path.removeprefix(base)
        if (method, route) == ("GET", "healthz"):
            return 200, {"multi_user": self.multi_user, "pipeline_store": "database"}
        if (method, route) == ("GET", "pipelines"):
            name = json.loads(q["filter"])["predicates"][0]["stringValue"] if q.get("filter") else None
            found = [p for p in self.pipelines if p["namespace"] == q.get("namespace", "")
                     and name in (None, p["display_name"])]
            return 200, {"pipelines": found, "total_size": len(found)} if found else {}
        if (method, route) in (("POST", "pipelines/upload"), ("POST", "pipelines/upload_version")):
            refused = self._check_package(_uploaded(body, ctype))
            if refused:
                return 400, {"error": refused, "message": refused, "code": 3}
            if route == "pipelines/upload":
                if self.multi_user and not q.get("namespace"):
                    msg = ("Failed to authorize with API: User is not authorized to create shared pipelines: "
                           "permission to create shared pipelines denied")
                    return 403, {"error": msg, "message": msg, "code": 7}
                pipeline = {"pipeline_id": self._id("pipeline"), "display_name": q["name"],
                            "namespace": q.get("namespace", "")}
                self.pipelines.append(pipeline)
                self.versions[pipeline["pipeline_id"]] = [{"pipeline_version_id": self._id("version"),
                                                           "pipeline_id": pipeline["pipeline_id"]}]
                return 200, pipeline
            version = {"pipeline_version_id": self._id("version"), "pipeline_id": q["pipelineid"],
                       "display_name": q["name"]}
            self.versions[q["pipelineid"]].insert(0, version)
            return 200, version
        if method == "GET" and route.startswith("pipelines/") and route.endswith("/versions"):
            pid = route.split("/")[1]
            return 200, {"pipeline_versions": self.versions[pid][:1], "total_size": len(self.versions[pid])}
        if (method, route) == ("GET", "experiments"):
            name = json.loads(q["filter"])["predicates"][0]["stringValue"]
            ns = q.get("namespace", "")
            found = [e for e in self.experiments if e["display_name"] == name and e["namespace"] == ns]
            return 200, {"experiments": found, "total_size": len(found)} if found else {}
        if (method, route) == ("POST", "experiments"):
            exp = json.loads(body)
            if self.multi_user and not exp.get("namespace"):
                return 400, {"error": "Invalid input error: multi-user mode requires a namespace", "code": 3}
            exp = {"experiment_id": self._id("experiment"), "display_name": exp["display_name"],
                   "namespace": exp.get("namespace") or ""}
            self.experiments.append(exp)
            return 200, exp
        if (method, route) == ("POST", "runs"):
            run = json.loads(body)
            run_id = self.add_run(self.states, FAILED_TASKS if "FAILED" in self.states else None)
            self.runs[run_id]["run"] |= {"display_name": run["display_name"], "experiment_id": run["experiment_id"],
                                         "pipeline_version_reference": run.get("pipeline_version_reference")}
            return 200, {**self.runs[run_id]["run"], "state": "PENDING"}
        if method == "GET" and route.startswith("runs/"):
            entry = self.runs.get(route.split("/")[1])
            if entry is None:
                return 404, {"error": "run not found", "code": 5}
            now = entry["states"][min(entry["seen"], len(entry["states"]) - 1)]
            entry["seen"] += 1
            run = {**entry["run"], "state": now}
            if now == "FAILED":
                run["error"] = {"code": 2, "message": "run failed"}
                run["run_details"] = {"task_details": entry["tasks"] or []}
            return 200, run
        return 404, {"error": f"no route {method} {path}", "code": 5}

    def _check_package(self, package: bytes) -> str:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pipeline.yaml"
            path.write_bytes(package)
            refused = problems(path, self.release)
        return f"Failed to create a pipeline: invalid pipeline spec ({self.release}): {refused[0]}" if refused else ""

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                url = urlparse(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, doc = fake.handle(method, url.path, parse_qs(url.query), body,
                                          self.headers.get("Content-Type", ""))
                out = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def log_message(self, *args):  # quiet
                pass

        return Handler


def _uploaded(body: bytes, ctype: str) -> bytes:
    """The `uploadfile` part of a multipart/form-data body."""
    msg = BytesParser(policy=email_policy).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
    for part in msg.iter_parts():
        if part.get_param("name", header="content-disposition") == "uploadfile":
            return part.get_payload(decode=True)
    raise ValueError("no uploadfile part")
