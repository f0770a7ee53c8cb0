"""The KFP API server's parse of a compiled pipeline, offline: each supported backend release's own
protobuf schemas (tests/data/kfp/backend-<tag>.binpb, see extract.py and SOURCES.json there), each in
a descriptor pool of its own, and protojson-strict parsing (unknown fields refused, as the Go server
parses with DiscardUnknown=false): the IR into PipelineSpec and its deploymentSpec into
PipelineDeploymentConfig, the platform spec into PlatformSpec, and every executor's Kubernetes config
into KubernetesExecutorConfig."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

DATA = Path(__file__).resolve().parents[1] / "data" / "kfp"
TAGS = tuple(json.loads((DATA / "SOURCES.json").read_text()))  # e.g. ("2.14.0", ..., "2.17.0")


@cache
def messages(tag: str) -> dict[str, type]:
    fds = descriptor_pb2.FileDescriptorSet.FromString((DATA / f"backend-{tag}.binpb").read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    names = {"PipelineSpec": "ml_pipelines.PipelineSpec", "PlatformSpec": "ml_pipelines.PlatformSpec",
             "PipelineDeploymentConfig": "ml_pipelines.PipelineDeploymentConfig",
             "KubernetesExecutorConfig": "kfp_kubernetes.KubernetesExecutorConfig"}
    return {k: message_factory.GetMessageClass(pool.FindMessageTypeByName(v)) for k, v in names.items()}


def refuses(doc: dict, kind: str, tag: str) -> str:
    """Why release `tag` refuses `doc` as a `kind` message ('' when it parses)."""
    try:
        json_format.ParseDict(doc, messages(tag)[kind](), ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        return str(exc)
    return ""


def problems(path: str | Path, tag: str) -> list[str]:
    """Every part of the compiled package `path` that release `tag` refuses, one line each."""
    spec, *platform = yaml.safe_load_all(Path(path).read_text())
    out = []

    def parse(doc: dict, kind: str, where: str) -> None:
        if why := refuses(doc, kind, tag):
            out.append(f"{where}: {why}")

    parse(spec, "PipelineSpec", "pipeline spec")
    # a Struct inside PipelineSpec; the compiler reads it into PipelineDeploymentConfig (executors, importers)
    parse(spec.get("deploymentSpec", {}), "PipelineDeploymentConfig", "deployment spec")
    for doc in platform:
        parse(doc, "PlatformSpec", "platform spec")
        executors = doc.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
        for name, ex in executors.items():
            parse(ex, "KubernetesExecutorConfig", name)
    return out
