"""The KFP backend releases kdflow compiles for, and the fields each one's API server accepts.

The API server parses the Kubernetes config of every executor with protojson, unknown fields refused
(`backend/src/v2/compiler/argocompiler/container.go`), so one field the cluster's release does not
know fails run creation. The release is `kubeflow.kfp_backend` (compile time); fields a release
lacks are left out, and a setting that needs one is refused naming the release it needs.
`tests/unit/test_kfp_backends.py` proves this table against each release's own protobuf schemas
(`tests/data/kfp/`, their tags in SOURCES.json).
"""

from __future__ import annotations

VERSIONS = ("2.14", "2.15", "2.16", "2.17")
# first release whose protos have the field kdflow writes
SECURITY_CONTEXT = "2.16"  # KubernetesExecutorConfig.security_context (kubeflow.run_as_user)
OPTIONAL_SECRET = "2.15"   # SecretAsEnv.optional (kfp-kubernetes writes it on every Secret)
WORKSPACE_IMPORT = "2.15"  # ImporterSpec.download_to_workspace (kubeflow.workspace with an importer)
# the oldest release on which the default settings (run_as_user, optional Secrets) are all valid
DEFAULT = SECURITY_CONTEXT


def key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:2])


def supports(target: str, feature: str) -> bool:
    return key(target) >= key(feature)


def lower(platform: dict, target: str) -> dict:
    """The compiled platform spec as `target` reads it: before OPTIONAL_SECRET, `optional` (which
    kfp-kubernetes writes, false included) is removed from every secretAsEnv; optional Secrets were
    already left out at compile time (kdflow.kfp.tasks)."""
    if supports(target, OPTIONAL_SECRET):
        return platform
    executors = platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
    for ex in executors.values():
        for secret in ex.get("secretAsEnv", []):
            secret.pop("optional", None)
    return platform
