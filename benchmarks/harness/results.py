"""results/<name>.json (with the machine and the date) and the printed report of a benchmark."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .env import RESULTS, cleanup
from .machine import machine


def write_result(name: str, doc: dict, results: Path = RESULTS) -> Path:
    """`results/<name>.json` with the machine and the date attached (written to a temp name, then renamed)."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.json"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"benchmark": name, "date": stamp, "machine": machine(), **doc}, indent=2,
                              default=str) + "\n")
    tmp.replace(path)
    return path


def finish(name: str, sections: list[str], doc: dict, loaded: bool, results: Path, scratch: Path,
           keep: bool) -> dict:
    """Print the tables (with a note when other work loaded the machine), write results/<name>.json, clean up."""
    md = "\n\n".join(sections + (["Machine loaded during the run (load average > cores): wall times include "
                                   "other processes' work."] if loaded else []))
    print(md, flush=True)
    doc = {**doc, "markdown": md}
    write_result(name, doc, results)
    cleanup(scratch, keep)
    return doc
