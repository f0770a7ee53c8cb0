"""The kustomize manifests render offline; core kinds pass `kubernetes-validate --strict`; the
CRDs render; and the properties production relies on hold (non-root, read-only root, probes,
secrets by reference, least-privilege RBAC, flags the binaries accept)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kdflow.kfp import image
from kdflow.monitoring import rules
from kdflow.monitoring.controller import parser as controller_parser
from kdflow.serving.config import parser as server_parser

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "manifests" / "overlays" / "example"
CRD_GROUPS = {"monitoring.coreos.com"}
TOKEN_SECRET = {"name": "kdflow-webhook-token", "key": "token"}
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")]


def render(path: Path) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return render(OVERLAY)


def one(docs, kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name} rendered {len(found)} times"
    return found[0]


def test_base_and_overlay_render_the_expected_kinds(docs):
    assert render(ROOT / "manifests" / "base")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["AlertmanagerConfig", "ConfigMap", "Deployment", "Deployment", "Namespace",
                            "NetworkPolicy", "PodDisruptionBudget", "PrometheusRule", "Role", "RoleBinding",
                            "Service", "Service",
                            "ServiceAccount", "ServiceMonitor", "ServiceMonitor"])
    assert all(d["metadata"].get("namespace") == "kdflow" for d in docs if d["kind"] != "Namespace")


def test_core_kinds_pass_strict_schema_validation(docs, tmp_path):
    core = [d for d in docs if d["apiVersion"].split("/")[0] not in CRD_GROUPS]
    path = tmp_path / "core.yaml"
    path.write_text(yaml.safe_dump_all(core))
    out = subprocess.run(["kubernetes-validate", "--strict", "--quiet", str(path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_crds_render_with_their_content(docs):
    rule = one(docs, "PrometheusRule", "kdflow-rules")
    assert rule["spec"]["groups"] == rules.load()["groups"]          # what promtool tested is what ships
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    monitor = one(docs, "ServiceMonitor", "kdflow-serving")
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"   # job="kdflow-serving" in the rules
    svc = one(docs, "Service", "kdflow-serving")
    assert svc["metadata"]["labels"]["app.kubernetes.io/name"] == "kdflow-serving"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    am = one(docs, "AlertmanagerConfig", "kdflow-rollback")
    webhook = am["spec"]["receivers"][0]["webhookConfigs"][0]
    assert webhook["url"] == "http://kdflow-controller.kdflow.svc:9100/alertmanager"
    assert webhook["httpConfig"]["authorization"] == {"type": "Bearer", "credentials": TOKEN_SECRET}
    dashboard = one(docs, "ConfigMap", "kdflow-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["kdflow.json"])["panels"]


@pytest.mark.parametrize("name", ["kdflow-serving", "kdflow-controller"])
def test_pods_are_locked_down(docs, name):
    spec = one(docs, "Deployment", name)["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    volumes = {v["name"]: v for v in spec["volumes"]}
    for c in spec["containers"]:
        assert c["image"] == image.reference(ROOT)  # manifests/image, the one place compile reads too
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert tmp and "emptyDir" in volumes[tmp[0]["name"]]
        assert c["readinessProbe"]["httpGet"]["port"] == c["livenessProbe"]["httpGet"]["port"] == "http"
        assert {"cpu", "memory"} <= c["resources"]["requests"].keys() & c["resources"]["limits"].keys()


def test_secrets_only_by_reference(docs):
    assert not [d for d in docs if d["kind"] == "Secret"]
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in c["env"]}
            assert env["MLFLOW_TRACKING_URI"]["valueFrom"]["secretKeyRef"]["name"] == "kdflow-mlflow"
            for e in c["env"]:
                if any(w in e["name"] for w in ("URI", "PASSWORD", "USERNAME", "KEY", "TOKEN", "SECRET")):
                    assert "value" not in e and "secretKeyRef" in e["valueFrom"], e["name"]


def test_controller_webhook_is_guarded(docs):
    """Token from the Secret Alertmanager also sends; only Alertmanager and Prometheus reach the port."""
    deployment = one(docs, "Deployment", "kdflow-controller")["spec"]
    pod = deployment["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["KDFLOW_WEBHOOK_TOKEN"]["valueFrom"]["secretKeyRef"] == TOKEN_SECRET
    assert "--insecure-no-auth" not in pod["containers"][0]["args"]
    policy = one(docs, "NetworkPolicy", "kdflow-controller")["spec"]
    assert policy["podSelector"]["matchLabels"] == deployment["selector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress"] and len(policy["ingress"]) == 1
    rule = policy["ingress"][0]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert peer["podSelector"]["matchExpressions"] == [
        {"key": "app.kubernetes.io/name", "operator": "In", "values": ["alertmanager", "prometheus"]}]


def test_rbac_is_least_privilege(docs):
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = one(docs, "Role", "kdflow-controller")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    binding = one(docs, "RoleBinding", "kdflow-controller")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kdflow-controller", "namespace": "kdflow"}]
    server = one(docs, "Deployment", "kdflow-serving")["spec"]["template"]["spec"]
    assert server["automountServiceAccountToken"] is False
    controller = one(docs, "Deployment", "kdflow-controller")["spec"]["template"]["spec"]
    assert controller["serviceAccountName"] == "kdflow-controller"


def test_container_args_are_accepted_by_the_binaries(docs):
    server = one(docs, "Deployment", "kdflow-serving")["spec"]["template"]["spec"]["containers"][0]
    assert server["command"] == ["kdflow", "serve"]
    args = server_parser().parse_args(server["args"])
    assert args.model == "models:/kdflow-student@champion" and args.host == "0.0.0.0"
    assert server["ports"][0]["containerPort"] == args.port
    controller = one(docs, "Deployment", "kdflow-controller")["spec"]["template"]["spec"]["containers"][0]
    assert controller["command"] == ["kdflow", "monitor"]
    cargs = controller_parser().parse_args(controller["args"])
    assert cargs.model_name == args.model.split("/")[1].split("@")[0]
    assert cargs.k8s_events == "kdflow-serving"
    assert controller["ports"][0]["containerPort"] == cargs.port
