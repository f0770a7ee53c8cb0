"""Length-grouped training batches for ragged text (the `group_by_length` of Hugging Face's Trainer).

A text batch is padded to its longest sample, and a shuffled batch of SST-2 phrases (mean 13 tokens) pads
to the tail of the length distribution (~40), so most of a step's work is padding. `LengthBuckets`
shuffles as `EpochBatches` does (same per-(seed, epoch) permutation, same DDP shard), then sorts each
window of `window` batches by length, cuts it into batches and shuffles the batch order: batches hold
samples of similar length, every sample still comes once an epoch, and the order stays random.
"""

from __future__ import annotations

import numpy as np
import torch

from kdflow.data.samplers import EpochBatches

WINDOW = 50  # batches per sorted window: long enough to group lengths, short enough to stay random


class LengthBuckets(EpochBatches):
    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, drop_last: bool = False,
                 window: int = WINDOW):
        super().__init__(len(lengths), batch_size, True, seed, drop_last=drop_last)
        self.lengths = torch.as_tensor(np.asarray(lengths), dtype=torch.int64)
        self.window = window

    def __iter__(self):
        order = self._indices()
        stop = len(order) - (len(order) % self.batch_size if self.drop_last else 0)
        order = order[:stop]
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch + 7)
        span = self.batch_size * self.window
        out = []
        for i in range(0, len(order), span):
            chunk = order[i:i + span]
            chunk = chunk[torch.argsort(self.lengths[chunk], descending=True, stable=True)]
            out += list(chunk.split(self.batch_size))
        for j in torch.randperm(len(out), generator=g).tolist():
            yield out[j]
