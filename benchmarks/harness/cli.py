"""The flags every benchmark takes (`--quick`, `--dry`, `--results`, `--keep`) and a one-call `main()`."""

from __future__ import annotations

from pathlib import Path

from .env import RESULTS


def size_of(args) -> str:
    return "dry" if args.dry else "quick" if args.quick else "full"


def run_main(run, argv: list[str] | None, doc: str) -> int:
    """`main()` of a benchmark whose whole work is `run(size, results, keep)`."""
    import argparse

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_common_args(p)
    a = p.parse_args(argv)
    run(size_of(a), a.results, a.keep)
    return 0


def add_common_args(parser) -> None:
    parser.add_argument("--quick", action="store_true", help="the `make bench-quick` sizes (≤ 5 min in all)")
    parser.add_argument("--dry", action="store_true", help="tiny sizes that only exercise the harness (tests)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON results go")
    parser.add_argument("--keep", action="store_true", help="keep the temp work directories")
