"""lib.engine.evaluate: top-k counts, the evaluation loop, sharded evaluation."""
import logging

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from lib.config import load_config
from lib.engine.child import child_loader_policy
from lib.engine.common import RunContext, build_loaders
from lib.engine.evaluate import _valid_samples_on_rank, evaluate, topk_correct
from pimm.data import ShardedBatchSampler


def test_topk_correct_counts():
    logits = paddle.to_tensor([[0.1, 0.9, 0.0, 0.2, 0.3, 0.4, 0.5],
                               [0.8, 0.1, 0.0, 0.2, 0.3, 0.4, 0.5],
                               [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    labels = paddle.to_tensor([1, 6, 0])
    top1, top5 = topk_correct(logits, labels)
    assert (float(top1), float(top5)) == (1.0, 2.0)  # sample 1's label is 2nd, sample 2's last
    top1, top3 = topk_correct(logits[:, :2], paddle.to_tensor([1, 1, 0]), ks=(1, 3))
    assert (float(top1), float(top3)) == (1.0, 3.0)  # k above the class count: every sample


class _Sharded:
    def __init__(self, size, world, rank):
        self.dataset = list(range(size))
        self.batch_sampler = ShardedBatchSampler(self.dataset, 2, num_replicas=world, rank=rank)


@pytest.mark.parametrize("size, world", [(9, 2), (10, 4), (3, 4), (16, 4)])
def test_valid_prefixes_of_the_shards_cover_the_dataset_once(size, world):
    seen = []
    for rank in range(world):
        loader = _Sharded(size, world, rank)
        shard = loader.batch_sampler.shard_indices().tolist()
        seen += shard[:_valid_samples_on_rank(loader)]
    assert sorted(seen) == list(range(size))


def _ctx(cfg, tmp_path):
    return RunContext(cfg=cfg, mode="test", run_dir=str(tmp_path), logger=logging.getLogger("t"),
                      writer=None, rank=0, world_size=1, distributed=False)


class _Pixels(paddle.nn.Layer):
    """A deterministic 4-class 'model' of the mean colour, enough to check the bookkeeping."""

    def __init__(self):
        super().__init__()
        mix = np.random.RandomState(0).standard_normal((3, 4)).astype("float32")
        self.mix = paddle.to_tensor(mix)

    def forward(self, x):
        return x.mean(axis=[2, 3]) @ self.mix


def test_evaluate_equals_a_direct_computation_and_skips_padding(tmp_path, demo_data_dir):
    cfg = load_config(None, ["DATA_DIR", demo_data_dir, "DATASET.NUM_CLASSES", "4", "WORKERS", "0",
                             "DATASET.BATCH_SIZE", "3", "DATASET.VAL_BATCH_MUL", "1",
                             "LOG_INTERVAL", "2"])
    ctx = _ctx(cfg, tmp_path)
    _, loader = build_loaders(cfg, ctx, 32, policy=child_loader_policy(cfg), train=False)
    model = _Pixels()
    images, labels = zip(*loader)
    logits = model(paddle.concat(images))
    labels = paddle.concat(labels)
    ranked = np.argsort(-logits.numpy(), axis=1)
    result = evaluate(model, loader, ctx)
    assert result["images"] == 16 and len(loader) == 6  # the last batch holds one image
    assert result["prec1"] == pytest.approx(100.0 * np.mean(ranked[:, 0] == labels.numpy()))
    assert result["prec5"] == 100.0  # four classes
    assert result["loss"] == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-6)

    # rank 1 of 3 reads images 1, 4, ..., 13 and one padded duplicate, which does not count
    from pimm.data import create_loader

    shard = create_loader(loader.dataset, 32, 3, distributed=True, num_replicas=3, rank=1,
                          num_workers=0, interpolation="bicubic", crop_pct=0.875)
    assert len(shard.batch_sampler.shard_indices()) == 6
    part = evaluate(model, shard, ctx)
    mine = np.arange(1, 16, 3)
    assert part["images"] == 5
    expected_loss = float(F.cross_entropy(logits[mine], labels[mine]))
    assert part["loss"] == pytest.approx(expected_loss, rel=1e-6)
