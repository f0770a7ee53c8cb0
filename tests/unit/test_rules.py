"""Alert rules: promtool checks and unit tests of the source rules, the generated PrometheusRule
in sync, every alert tested both ways, a runbook entry per alert, dashboard queries that exist."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kdflow.monitoring import rules
from kdflow.monitoring.controller_metrics import ControllerMetrics
from kdflow.serving.server_metrics import ServerMetrics

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "manifests" / "monitoring" / "tests" / "kdflow.rules.test.yml"
DASHBOARD = ROOT / "manifests" / "monitoring" / "dashboards" / "kdflow.json"
DOCS = ROOT / "docs" / "monitoring.md"
promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)


@promtool
def test_source_rules_are_valid():
    out = run_promtool("check", "rules", str(rules.SOURCE))
    assert out.returncode == 0, out.stdout + out.stderr


@promtool
def test_promtool_unit_tests_pass():
    out = run_promtool("test", "rules", str(TESTS))
    assert out.returncode == 0, out.stdout + out.stderr


@promtool
def test_retimed_rules_for_integration_tests_are_valid(tmp_path):
    path = tmp_path / "fast.yml"
    path.write_text(yaml.safe_dump(rules.retime(rules.load(), "6s", "2s")))
    out = run_promtool("check", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr


def test_prometheus_rule_is_generated_from_the_source():
    assert rules.main(["--check"]) == 0, "run: python -m kdflow.monitoring.rules --write"
    crd = yaml.safe_load(rules.CRD.read_text())
    assert crd["kind"] == "PrometheusRule" and crd["spec"]["groups"] == rules.load()["groups"]


def test_drift_is_detected(tmp_path):
    stale = tmp_path / "prometheusrule.yaml"
    stale.write_text(rules.CRD.read_text().replace("> 0.05", "> 0.5"))
    assert rules.main(["--check", "--out", str(stale)]) == 1


def test_every_alert_has_a_firing_and_a_quiet_promtool_case():
    cases = [c for t in yaml.safe_load(TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    for name in rules.alert_names(rules.load()):
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), f"{name}: no case where it fires"
        assert any(not c.get("exp_alerts") for c in mine), f"{name}: no case where it stays quiet"


def test_every_rollback_alert_is_per_version():
    for group in rules.load()["groups"]:
        for rule in group["rules"]:
            if rule.get("labels", {}).get("rollback") == "true":
                assert "model_version" in rule["expr"], rule["alert"]


def test_versions_are_never_aggregated_without_their_model():
    """Two models in a namespace both have a version 2: every by/on clause that keeps model_version keeps
    model_name too (issue 25: an alert about another model's v2 rolled this model's v2 back)."""
    for group in rules.load()["groups"]:
        for rule in group["rules"]:
            for clause in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", rule["expr"]):
                if "model_version" in clause:
                    assert "model_name" in clause, (rule.get("alert") or rule.get("record"), clause)


def test_aggregations_keep_namespace_for_the_alertmanagerconfig_route():
    """The Operator matches namespace="<ns>" on AlertmanagerConfig routes: an alert that lost it is never routed."""
    for group in rules.load()["groups"]:
        for rule in group["rules"]:
            for clause in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", rule["expr"]):
                assert "namespace" in clause, (rule.get("alert") or rule.get("record"), clause)


def test_every_alert_has_a_runbook_entry():
    docs = DOCS.read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", docs, re.M)}
    for group in rules.load()["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                anchor = rule["annotations"]["description"].split("#")[-1]
                assert anchor == rule["alert"].lower() and anchor in anchors, rule["alert"]


def _known_series() -> set[str]:
    names = set()
    for registry in (ServerMetrics().registry, ControllerMetrics("m").registry):
        for family in registry.collect():
            base = family.name
            names |= {base, f"{base}_total", f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    names |= {r["record"] for g in rules.load()["groups"] for r in g["rules"] if "record" in r}
    return names | {"ALERTS", "up"}


def test_dashboard_queries_use_existing_series():
    dash = json.loads(DASHBOARD.read_text())
    known = _known_series()
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert exprs
    for expr in exprs:
        for name in re.findall(r"\b((?:kdflow_|model_version[a-z_]*:|ALERTS\b)[a-zA-Z0-9_:]*)", expr):
            assert name in known, f"dashboard uses unknown series {name}"
