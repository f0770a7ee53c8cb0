"""Weight files: a state_dict from `.pt`/`.pth`/`.bin` (loaded with `weights_only=True`) or `.safetensors`.

Nothing is unpickled. Loading into a network names the problem: which keys are missing, which are
unexpected, which have another shape (the usual sign of a class-count or architecture mismatch).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from kdflow.errors import KdflowError

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SHOW = 5  # keys listed per kind of mismatch


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise KdflowError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif path.suffix in TORCH_SUFFIXES:
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise KdflowError(f"unsupported weights format '{path.suffix}' ({path}); use .safetensors or a "
                              f"state_dict saved with torch.save ({', '.join(TORCH_SUFFIXES)})")
    except KdflowError:
        raise
    except ImportError as exc:
        raise KdflowError(f"reading {path} needs safetensors: pip install 'kdflow[models]' ({exc})") from None
    except Exception as exc:  # weights_only refuses pickled objects; a truncated file fails here too
        raise KdflowError(f"cannot read weights {path} as a state_dict (weights_only): "
                          f"{str(exc).splitlines()[0]}") from None
    # a Lightning checkpoint or {"model": state_dict} wrapper: take the state_dict inside
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise KdflowError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return state


def _few(keys) -> str:
    keys = sorted(keys)
    more = f" … (+{len(keys) - SHOW} more)" if len(keys) > SHOW else ""
    return ", ".join(keys[:SHOW]) + more


def load_weights(net: nn.Module, state: dict[str, torch.Tensor], what: str, strict: bool = True) -> None:
    """Load `state` into `net`; one clear error listing a few missing/unexpected/mis-shaped keys."""
    own = net.state_dict()
    shapes = [f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items()
              if k in own and own[k].shape != v.shape]
    missing = set(own) - set(state)
    unexpected = set(state) - set(own)
    problems = []
    if shapes:
        problems.append(f"shape mismatch ({len(shapes)}): {_few(shapes)}")
    if strict and missing:
        problems.append(f"missing keys ({len(missing)}): {_few(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_few(unexpected)}")
    if problems:
        hint = " (source.strict: false ignores missing/unexpected keys)" if missing or unexpected else ""
        raise KdflowError(f"{what}: weights do not fit the network: " + "; ".join(problems) + hint)
    net.load_state_dict(state, strict=False)
