"""One table of every goal beside its measured value, read from the results JSON files (no hand-written numbers).

Benchmarks store goals in a few shapes; each is read as it is:
- `targets: {name: {"value": v, "target": "<= 25", "met": bool}}` (serving, rollback, streaming)
- `targets: [{"target": name, "goal": g, "measured": v, "met": bool | None}]` (text, text_embed; None: reported)
- `target`/`measured`/`target_met` (streaming.json measured before it used the harness)
- otherwise the rows of its markdown tables whose last cell ends in a verdict (`… → met`, `…: MISSED`), and
  sentences with a bold measured value and `target …: met|MISSED` after it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .tables import table, verdict

_VERDICT = re.compile(r"(.*?)[\s:→]*\b(met|MISSED)\W*$")
# "Distillation closes **50%** of the gap …; target ≥ 80 %: MISSED"
_SENTENCE = re.compile(r"([^.*]*)\*\*([^*]+)\*\*[^*]*?target ([^:;]+?):\s*\**(met|MISSED)")


def _num(v) -> str:
    return f"{v:,.3g}" if isinstance(v, float) else str(v)


def goal_rows(name: str, doc: dict) -> list[tuple[str, str, str, str]]:
    """(benchmark, goal, measured, verdict) rows of one results document."""
    t = doc.get("targets")
    if isinstance(t, dict) and any(isinstance(v, dict) and "met" in v for v in t.values()):
        return [(name, f"{k} {v.get('target', '')}".strip(), _num(v.get("value", "")), verdict(v["met"]))
                for k, v in t.items() if isinstance(v, dict) and "met" in v]
    if isinstance(t, list) and t and all(isinstance(v, dict) and "met" in v for v in t):
        return [(name, f"{v.get('target', '')} {v.get('goal', '')}".strip(), _num(v.get("measured", "")),
                 "—" if v["met"] is None else verdict(v["met"])) for v in t]  # None: reported, not judged
    if "target_met" in doc:
        return [(name, json.dumps(doc.get("target")), json.dumps(doc.get("measured"))[:80], verdict(doc["target_met"]))]
    rows, header = [], []
    for line in (doc.get("markdown") or "").splitlines():
        if not line.startswith("|"):
            header = []
            rows += [(name, f"{m.group(1).strip()} … target {m.group(3).strip()}", m.group(2),
                      verdict(m.group(4) == "met")) for m in _SENTENCE.finditer(line)]
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = [c.lower() for c in cells]
            continue
        m = _VERDICT.match(cells[-1]) if len(cells) > 1 else None
        if not m:
            continue
        cells[-1] = m.group(1).strip(" ,→:")
        goal = header.index("target") if "target" in header else len(cells) - 1
        measured = [c for i, c in enumerate(cells) if i not in (0, goal) and c]
        rows.append((name, f"{cells[0]}: {cells[goal]}", " · ".join(measured) or "—", verdict(m.group(2) == "met")))
    return rows


def goals_table(results: Path, names: list[str]) -> str:
    rows = []
    for name in names:
        path = results / f"{name}.json"
        if path.is_file():
            doc = json.loads(path.read_text())
            # results written before the harness stamped them (old text*.json) have no date: say so
            rows += [(*r, str(doc["date"])[:10] if "date" in doc else "not recorded")
                     for r in goal_rows(name, doc)]
    return table(["benchmark", "goal", "measured", "verdict", "measured on"], rows) if rows else ""
