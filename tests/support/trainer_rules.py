"""The Kubeflow Trainer admission rules a TrainJob can be checked against offline, restated from the
Trainer's Go code (stored public code, kubeflow/trainer `pkg/runtime/framework/plugins/jobset/jobset.go`
Validate and k8s.io/apimachinery `validation.IsDomainPrefixedPath`): patch managers are domain-prefixed
paths; targeted jobs and containers exist in the runtime; the reserved `node` container gets no env
through an override (the trainer API sets it); and the name makes valid JobSet Service names."""

from __future__ import annotations

import re

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_HTTP_PATH = re.compile(r"^[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# replicatedJob -> its containers, of the runtimes kdflow targets (the Trainer's manifests/overlays/runtimes)
RUNTIMES = {"torch-distributed": {"node": {"node"}}}
RESERVED = {"node", "dataset-initializer", "model-initializer"}


def domain_prefixed_path(value: str) -> list[str]:
    """validation.IsDomainPrefixedPath: `<DNS-1123 subdomain>/<HTTP path>`, e.g. acme.io/foo."""
    host, sep, path = value.partition("/")
    if not (sep and host and path):
        return [f"{value!r}: must be a domain-prefixed path (such as \"acme.io/foo\")"]
    out = []
    if len(host) > 253 or not _SUBDOMAIN.match(host):
        out.append(f"{value!r}: {host!r} is not a DNS-1123 subdomain")
    if not _HTTP_PATH.match(path):
        out.append(f"{value!r}: {path!r} is not a valid HTTP path")
    return out


def _targets(job: dict) -> list[tuple[str | None, str, dict]]:
    """(manager, targeted replicatedJob, pod spec) of every pod override/patch, whichever field the release uses."""
    spec, out = job["spec"], []
    for o in spec.get("podSpecOverrides", []):
        out += [(None, t["name"], o) for t in o.get("targetJobs", [])]
    for o in spec.get("podTemplateOverrides", []):
        out += [(o.get("manager"), t["name"], o.get("spec") or {}) for t in o.get("targetJobs", [])]
    for p in spec.get("runtimePatches", []):
        jobs = (p.get("trainingRuntimeSpec") or {}).get("template", {}).get("spec", {}).get("replicatedJobs", [])
        out += [(p.get("manager", ""), rj["name"], rj.get("template", {}).get("spec", {}).get("template", {})
                 .get("spec", {})) for rj in jobs]
        if not jobs:
            out.append((p.get("manager", ""), "", {}))
    return out


def problems(job: dict) -> list[str]:
    name = job["metadata"]["name"]
    out = [] if len(name) <= 63 and _DNS1035.match(name) else [f"name {name!r} is not a DNS-1035 label"]
    runtime = RUNTIMES.get(job["spec"]["runtimeRef"]["name"])
    for manager, target, pod in _targets(job):
        if manager is not None:
            out += [f"manager {m}" for m in domain_prefixed_path(manager)]
        if runtime is None or not target:
            continue
        if target not in runtime:
            out.append(f"targetJob {target!r} does not exist in the runtime (has {sorted(runtime)})")
            continue
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            if c["name"] not in runtime[target]:
                out.append(f"container {c['name']!r} does not exist in the runtime job {target!r}")
            elif c.get("env") and c["name"] in RESERVED:
                out.append(f"container {c['name']!r}: envs of reserved containers go through spec.trainer")
    return out
