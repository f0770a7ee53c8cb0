import numpy as np
import pytest
import torch

from kdflow.data.module import KDDataModule
from kdflow.errors import KdflowError
from kdflow.soft_target_store import lookup_table, read_store, write_store


def test_store_round_trip_float16_and_checksum(tmp_path):
    ids = np.array([7, 3, 11, 0])
    logits = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    m = write_store(tmp_path / "s", ids, logits, shard_size=3, topk=None, meta={"teachers": ["t"]})
    assert len(m["shards"]) == 2 and m["raw_logits"]
    got_ids, got, _ = read_store(tmp_path / "s")
    assert np.array_equal(got_ids, ids) and np.allclose(got, logits, atol=1e-2)
    table = lookup_table(tmp_path / "s")
    assert torch.allclose(table[torch.tensor([11, 0])], torch.from_numpy(logits[[2, 3]]), atol=1e-2)
    assert torch.isnan(table[5]).all()  # an id the store lacks cannot pass silently
    shard = tmp_path / "s" / m["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:-10] + b"0" * 10)
    with pytest.raises(KdflowError, match="fails its checksum"):
        read_store(tmp_path / "s")


def test_topk_keeps_the_largest_and_fills_the_tail(tmp_path):
    logits = np.array([[5.0, 1.0, 2.0, -3.0]], np.float32)
    write_store(tmp_path / "s", np.array([0]), logits, 10, topk=2, meta={})
    _, got, _ = read_store(tmp_path / "s")
    assert np.allclose(got, [[5.0, -1.0, 2.0, -1.0]])  # tail = mean(1, -3) = -1


def test_shards_join_the_right_samples_under_shuffling(tmp_path, prepared):
    """A fake 'teacher' whose logits encode each sample's id: the join must return exactly that id."""
    dm = KDDataModule(prepared, batch_size=16, with_transfer=True)
    parts = [dm.split("train"), dm.split("transfer")]
    ids = np.concatenate([p["id"] for p in parts])
    order = np.random.default_rng(1).permutation(len(ids))  # stored in another order than loaded
    logits = np.stack([ids % 97, ids // 97], 1).astype(np.float32)[order]
    write_store(tmp_path / "s", ids[order], logits, shard_size=50, topk=None, meta={})
    table = lookup_table(tmp_path / "s")
    for _, _, batch_ids in dm.train_dataloader():
        t = table[batch_ids]
        assert torch.equal(t[:, 0] + 97 * t[:, 1], batch_ids.float())


@pytest.mark.parametrize("topk", [None, 2])
def test_mapped_table_matches_the_dense_one_and_store_writer_streams(tmp_path, topk):
    from kdflow.soft_target_store import MappedTable, StoreWriter, count_missing

    rng = np.random.default_rng(0)
    ids = rng.permutation(np.arange(0, 60, 2))  # even ids only, shuffled
    logits = rng.normal(size=(30, 5)).astype(np.float32)
    once = write_store(tmp_path / "a", ids, logits, shard_size=7, topk=topk, meta={})
    w = StoreWriter(tmp_path / "b", 7, topk, {})
    for i in range(0, 30, 4):  # fed in pieces that do not line up with shards
        w.add(ids[i:i + 4], logits[i:i + 4])
    assert w.close()["checksum"] == once["checksum"]
    dense, mapped = lookup_table(tmp_path / "a"), MappedTable(tmp_path / "b")
    assert mapped.dim() == 2 and len(mapped) == len(dense) == 59
    q = torch.tensor([4, 0, 58, 10])
    assert torch.equal(mapped[q], dense[q])
    assert torch.isnan(mapped[torch.tensor([3, 99])]).all()  # absent and out-of-range ids are NaN
    assert count_missing(mapped, np.arange(10)) == count_missing(dense, np.arange(10)) == 5
    assert count_missing(mapped, np.array([100])) == 1
