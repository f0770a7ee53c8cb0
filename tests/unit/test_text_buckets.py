"""Length-grouped text batches: every sample once an epoch, similar lengths per batch, seeded order."""

import numpy as np

from kdflow.data.buckets import LengthBuckets


def test_length_buckets_keep_every_sample_group_lengths_and_follow_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(3, 60, 2000)
    s = LengthBuckets(lengths, 32, seed=1, drop_last=False, window=10)
    batches = [b.numpy() for b in s]
    assert sorted(np.concatenate(batches).tolist()) == list(range(2000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    shuffled = sum(len(b) * lengths[b].max() for b in np.array_split(np.random.default_rng(1).permutation(2000), 63))
    assert padded < 0.7 * shuffled  # batches pad to far less than a plain shuffle's
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(batches, LengthBuckets(lengths, 32, 1, window=10)))
    s.set_epoch(1)
    assert not np.array_equal(np.concatenate(batches), np.concatenate([b.numpy() for b in s]))
    assert [len(b) for b in LengthBuckets(lengths, 32, 1, drop_last=True)].count(32) == 2000 // 32
