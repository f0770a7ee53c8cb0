"""What the server and the controller accept from the model registry. Anyone who can write a
version (its model.json, its tags) must not be able to run code in a serving pod, so:

- a model spec names an architecture registered `trusted` in `kdflow.models.archs.ARCHS` (built-in, or a
  library one rebuilt by name/config without code from the spec: `torchvision:`, `timm:`, `hf-image:`,
  an exported `program:`); an
  `import:<module>:<Class>` spec loads only when the operator listed the module in
  `KDFLOW_ALLOWED_IMPORTS` (comma-separated; `pkg` also allows `pkg.sub`);
- a teacher/model URI read from the registry is `runs:/...` or `models:/...`; a local directory
  only under a root the operator listed in `KDFLOW_ALLOWED_LOCAL_ROOTS` (dev setups).

Both are checked before anything is imported, downloaded or built.
"""

from __future__ import annotations

import os
from pathlib import Path

from kdflow.errors import KdflowError
from kdflow.io import read_json
from kdflow.models import SPEC, load_model
from kdflow.models.archs import find_arch

ALLOWED_IMPORTS_ENV = "KDFLOW_ALLOWED_IMPORTS"
ALLOWED_ROOTS_ENV = "KDFLOW_ALLOWED_LOCAL_ROOTS"
REGISTRY_SCHEMES = ("runs:/", "models:/")


def allowed_imports() -> tuple[str, ...]:
    return tuple(m.strip() for m in os.environ.get(ALLOWED_IMPORTS_ENV, "").split(",") if m.strip())


def check_spec(spec: dict, where: str) -> None:
    """Refuse a spec whose architecture would import code the operator did not allow."""
    name = spec.get("name")
    if not isinstance(name, str):
        raise KdflowError(f"{where}: model spec has no architecture name")
    prefix = name.partition(":")[0]
    arch, _ = find_arch(name)
    if arch is not None and arch.trusted:  # name/config-built (`@register_arch(..., trusted=True)`): no spec code
        return
    if prefix == "import":
        module = name.split(":")[1] if name.count(":") == 2 else ""
        allowed = allowed_imports()
        if module and any(module == m or module.startswith(m + ".") for m in allowed):
            return
        raise KdflowError(f"{where}: model '{name[:200]}' imports module '{module[:100]}', which is not on the "
                          f"operator's allow-list {ALLOWED_IMPORTS_ENV}={','.join(allowed) or '(empty)'}; "
                          "refusing to load it")
    raise KdflowError(f"{where}: unknown model architecture '{name[:200]}'")


def load_trusted(path: str | Path, where: str):
    """`kdflow.models.load_model`, after checking the spec it would build."""
    check_spec(read_json(Path(path) / SPEC, "model spec"), where)
    model, spec = load_model(path)
    if spec.get("modality") == "text":  # the server tokenizes: the tokenizer saved with the model
        from kdflow.data.tokenized import TOKENIZER_DIR, load_tokenizer

        tok_dir = Path(path) / TOKENIZER_DIR if (Path(path) / TOKENIZER_DIR).is_dir() else Path(path)
        model.tokenizer = load_tokenizer(tok_dir)
    return model, spec


def check_uri(uri: str, what: str) -> None:
    """A URI taken from the registry: runs:/ or models:/, or a directory under an allow-listed root."""
    if uri.startswith(REGISTRY_SCHEMES):
        return
    if "://" not in uri and ":/" not in uri:
        path = Path(uri).resolve()
        roots = [Path(r).resolve() for r in os.environ.get(ALLOWED_ROOTS_ENV, "").split(os.pathsep) if r.strip()]
        if any(path == r or r in path.parents for r in roots):
            return
    raise KdflowError(f"{what} '{uri[:200]}' is not a runs:/ or models:/ URI (or a directory under "
                      f"{ALLOWED_ROOTS_ENV}); refusing to use it")
