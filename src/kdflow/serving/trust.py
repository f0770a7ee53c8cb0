"""What the server and the controller accept from the model registry. Anyone who can write a
version (its model.json, its tags) must not be able to run code in a serving pod, so:

- a model spec names an architecture registered `trusted` in `kdflow.models.archs.ARCHS` (built-in, or a
  library one rebuilt by name/config without code from the spec: `torchvision:`, `timm:`, `hf-image:`,
  an exported `program:`); an
  `import:<module>:<Class>` spec loads only when the operator listed the module in
  `KDFLOW_ALLOWED_IMPORTS` (comma-separated; `pkg` also allows `pkg.sub`);
- a spec's size is budgeted before anything is allocated: it is built on the `meta` device (shapes
  only) and refused when it has more than `KDFLOW_MAX_MODEL_PARAMS` parameters (default 250 M) or
  `KDFLOW_MAX_MODEL_BYTES` of parameters + buffers (default 1 GiB), or more than its `model.pt` can
  hold (a 188-byte spec must not make every replica allocate gigabytes before the weights are read);
  an exported `program` must be a file inside the model directory, no bigger than the byte budget;
- a teacher/model URI read from the registry is `runs:/...` or `models:/...`; a local directory
  only under a root the operator listed in `KDFLOW_ALLOWED_LOCAL_ROOTS` (dev setups).

All are checked before anything is imported, downloaded (URIs) or built (specs).
"""

from __future__ import annotations

import os
from pathlib import Path

from kdflow.errors import KdflowError
from kdflow.io import read_json
from kdflow.models import SPEC, WEIGHTS, load_model, program_file, spec_size
from kdflow.models.archs import find_arch

ALLOWED_IMPORTS_ENV = "KDFLOW_ALLOWED_IMPORTS"
ALLOWED_ROOTS_ENV = "KDFLOW_ALLOWED_LOCAL_ROOTS"
REGISTRY_SCHEMES = ("runs:/", "models:/")
MAX_PARAMS_ENV, MAX_BYTES_ENV = "KDFLOW_MAX_MODEL_PARAMS", "KDFLOW_MAX_MODEL_BYTES"
DEFAULT_MAX_PARAMS, DEFAULT_MAX_BYTES = 250_000_000, 1 << 30
MAX_SPEC_FILE_BYTES = 4 << 20  # model.json itself (a Hugging Face config with 21k labels is ~1 MB)
# model.pt must hold every parameter: a state_dict may be stored in half precision, never in less
WEIGHTS_SLACK_FACTOR, WEIGHTS_SLACK_BYTES = 2, 1 << 20


def _limit(env: str, default: int) -> int:
    text = os.environ.get(env, "").strip().replace("_", "")
    if not text:
        return default
    try:
        value = int(float(text))
    except ValueError:
        raise KdflowError(f"{env}={os.environ[env][:50]!r} is not a number") from None
    if value <= 0:
        raise KdflowError(f"{env} must be > 0, got {value}")
    return value


def budget() -> tuple[int, int]:
    """(max parameters, max bytes) a registry model may have, from the environment."""
    return _limit(MAX_PARAMS_ENV, DEFAULT_MAX_PARAMS), _limit(MAX_BYTES_ENV, DEFAULT_MAX_BYTES)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def check_size(path: Path, spec: dict, where: str) -> None:
    """Refuse a spec that would allocate more than the budget, or more than its weights file holds, measured on
    the meta device (nothing allocated). An exported program's budget is its file size."""
    max_params, max_bytes = budget()
    if spec.get("program"):
        try:
            program = program_file(path, spec)
        except KdflowError as exc:
            raise KdflowError(f"{where}: {exc}") from None
        size = program.stat().st_size if program.is_file() else 0
        if size > max_bytes:
            raise KdflowError(f"{where}: program {program.name} is {_mib(size)}, over the {_mib(max_bytes)} budget "
                              f"({MAX_BYTES_ENV}); refusing to load it")
        return
    try:
        size = spec_size(spec, max_params=max_params)
    except KdflowError as exc:
        raise KdflowError(f"{where}: {exc} (budget {MAX_PARAMS_ENV}={max_params:,}); refusing to build it") from None
    except Exception as exc:  # a spec its own builder cannot build (negative sizes, bad config): not servable
        raise KdflowError(f"{where}: model spec cannot be built: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
    if size.params > max_params or size.state_bytes > max_bytes:
        raise KdflowError(f"{where}: model '{str(spec.get('name'))[:100]}' has {size.params:,} parameters "
                          f"({_mib(size.state_bytes)}), over the budget of {max_params:,} ({MAX_PARAMS_ENV}) / "
                          f"{_mib(max_bytes)} ({MAX_BYTES_ENV}); refusing to build it")
    weights = Path(path) / WEIGHTS
    held = weights.stat().st_size if weights.is_file() else 0
    if size.param_bytes > WEIGHTS_SLACK_FACTOR * held + WEIGHTS_SLACK_BYTES:
        raise KdflowError(f"{where}: model spec describes {_mib(size.param_bytes)} of parameters but {WEIGHTS} holds "
                          f"{_mib(held)}: spec and weights do not match; refusing to build it")


def allowed_imports() -> tuple[str, ...]:
    return tuple(m.strip() for m in os.environ.get(ALLOWED_IMPORTS_ENV, "").split(",") if m.strip())


def check_spec(spec: dict, where: str) -> None:
    """Refuse a spec whose architecture would import code the operator did not allow."""
    if not isinstance(spec, dict):
        raise KdflowError(f"{where}: model spec must be a JSON object, got {type(spec).__name__}")
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
    """`kdflow.models.load_model`, after checking the spec it would build: allowed architecture, size budget,
    program path."""
    spec_path = Path(path) / SPEC
    if spec_path.is_file() and spec_path.stat().st_size > MAX_SPEC_FILE_BYTES:
        raise KdflowError(f"{where}: {SPEC} is {_mib(spec_path.stat().st_size)}, over {_mib(MAX_SPEC_FILE_BYTES)}; "
                          "refusing to read it")
    spec = read_json(spec_path, "model spec")
    check_spec(spec, where)
    check_size(Path(path), spec, where)
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
