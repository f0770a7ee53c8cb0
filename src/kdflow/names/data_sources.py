"""Data source schemes (torch-free): what `data.source` may name, read by everything that lists them.

One entry per `scheme:`: how prepare can read it (`kinds`: `memory` float arrays loaded whole, `encoded`
images kept encoded and decoded in loader workers, `text` tokenized once), how its argument names local
data (`paths`), and whether a DVC repo may hold it (`data.repo`). The loaders register under the scheme
(`kdflow.data.sources` memory loaders, `kdflow.data.encoded` readers, `kdflow.data.tokenized` text
readers); the config's description, prepare's error text, `kdflow.data.versioned` and the Kubeflow data
key (`kdflow.kfp.data_key`) read this table, so a new source is its loader + one line here.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

KINDS = ("memory", "encoded", "text")


@dataclass(frozen=True)
class DataSource:
    scheme: str
    arg: str  # what follows the scheme, for help and error texts ("" for a generated source)
    kinds: tuple[str, ...]
    # how the argument names local data: "path" a file or directory, "list" comma-separated files, "glob" a
    # directory or a glob pattern, None nothing (a generated source)
    paths: str | None = "path"
    versioned: bool = False  # data.repo may hold it (fetched at data.rev)
    help: str = ""

    @property
    def form(self) -> str:
        return f"{self.scheme}:{self.arg}" if self.arg else self.scheme

    def local_paths(self, arg: str) -> list[Path]:
        """The files/directories `arg` names (a glob expanded; URLs and a missing path are kept as given)."""
        if self.paths is None or not arg:
            return []
        if self.paths == "list":
            return [Path(p) for p in arg.split(",")]
        if self.paths == "glob" and glob.has_magic(arg) and "://" not in arg:
            return [Path(p) for p in sorted(glob.glob(arg))] or [Path(arg)]
        return [Path(arg)]


DATA_SOURCES: dict[str, DataSource] = {s.scheme: s for s in (
    DataSource("mnist1d", "", ("memory",), None, help="generated (data.num_samples)"),
    DataSource("digits", "", ("memory",), None, help="scikit-learn's 8x8 digits"),
    DataSource("npz", "<file>", ("memory",), versioned=True, help="arrays x, y"),
    DataSource("idx", "<images>,<labels>", ("memory",), "list", versioned=True),
    DataSource("mnist", "<dir>", ("memory",), versioned=True, help="MNIST's 4 idx files"),
    DataSource("csv", "<file>", ("memory", "text"), versioned=True),
    DataSource("tsv", "<file>", ("text",), help="no quoting, GLUE style"),
    DataSource("jsonl", "<file>", ("text",)),
    DataSource("parquet", "<file or dir>", ("memory", "encoded", "text"), versioned=True),
    DataSource("imagefolder", "<dir>", ("encoded",), versioned=True),
    DataSource("webdataset", "<dir or tar glob>", ("encoded",), "glob"),
    DataSource("datasets", "<save_to_disk dir>", ("encoded", "text")),
)}


def schemes(kind: str) -> tuple[str, ...]:
    return tuple(s for s, d in DATA_SOURCES.items() if kind in d.kinds)


def describe(kind: str | None = None) -> str:
    """`mnist1d, digits, npz:<file>, ...` (of one kind, when given)."""
    return ", ".join(d.form for d in DATA_SOURCES.values() if kind is None or kind in d.kinds)


def lookup(source: str) -> tuple[DataSource | None, str]:
    """(the table entry of `source`'s scheme or None, the argument after the scheme)."""
    scheme, _, arg = source.partition(":")
    return DATA_SOURCES.get(scheme), arg
