"""The serving benchmark's ceiling: a model that does no arithmetic. It is served as
`import:serving_noop:NoOp` (the server allows it through KDFLOW_ALLOWED_IMPORTS, with this directory
on PYTHONPATH), so its requests take the same HTTP, validation, batching and engine path as the
student's; the gap between the two rows is what the student's forward pass costs."""

from __future__ import annotations

import torch
from torch import nn


class NoOp(nn.Module):
    def __init__(self, input_shape: list[int], num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros((x.shape[0], self.num_classes))
