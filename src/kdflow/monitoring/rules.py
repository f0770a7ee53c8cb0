"""The alert rules: one plain Prometheus rule file is the source (promtool tests it); the
PrometheusRule the operator needs is generated from it, and a test fails when the two drift.

    python -m kdflow.monitoring.rules --check   # exit 1 when prometheusrule.yaml is stale
    python -m kdflow.monitoring.rules --write   # regenerate it
"""

from __future__ import annotations

import argparse
import copy
import difflib
import re
import sys
from pathlib import Path

import yaml

MONITORING = Path(__file__).resolve().parents[3] / "manifests" / "monitoring"
SOURCE = MONITORING / "rules" / "kdflow.rules.yml"
CRD = MONITORING / "prometheusrule.yaml"
CRD_NAME = "kdflow-rules"
_RANGE = re.compile(r"\[(\d+(?:ms|[smhdwy]))\]")


def load(path: Path = SOURCE) -> dict:
    return yaml.safe_load(Path(path).read_text())


def retime(doc: dict, window: str, for_: str) -> dict:
    """The same rules on a test's clock: every range `[5m]` becomes `[window]`, every `for:` becomes
    `for_`. Thresholds and rule names stay, so a test exercises the production logic."""
    out = copy.deepcopy(doc)
    for group in out["groups"]:
        for rule in group["rules"]:
            rule["expr"] = _RANGE.sub(f"[{window}]", rule["expr"])
            if "for" in rule:
                rule["for"] = for_
    return out


def alert_names(doc: dict) -> list[str]:
    return [r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r]


def prometheus_rule(doc: dict) -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/name": "kdflow",
                                                  "app.kubernetes.io/component": "monitoring"}},
        "spec": {"groups": doc["groups"]},
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None  # multi-line PromQL stays readable
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(doc: dict) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=200, allow_unicode=True)


def render_crd(source: Path = SOURCE) -> str:
    header = (f"# GENERATED from rules/{source.name} by `python -m kdflow.monitoring.rules --write`.\n"
              "# Do not edit: change the source, then regenerate (tests/unit/test_rules.py checks they match).\n")
    return header + dump(prometheus_rule(load(source)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kdflow.monitoring.rules", description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="fail when the PrometheusRule is out of date")
    mode.add_argument("--write", action="store_true", help="regenerate the PrometheusRule")
    p.add_argument("--source", type=Path, default=SOURCE)
    p.add_argument("--out", type=Path, default=CRD)
    args = p.parse_args(argv)
    want = render_crd(args.source)
    if args.write:
        args.out.write_text(want)
        print(f"wrote {args.out}")
        return 0
    have = args.out.read_text() if args.out.is_file() else ""
    if have == want:
        print(f"{args.out} is up to date")
        return 0
    diff = difflib.unified_diff(have.splitlines(True), want.splitlines(True), str(args.out), "generated")
    sys.stdout.writelines(diff)
    print(f"\n{args.out} is stale: run python -m kdflow.monitoring.rules --write", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
