"""lib.engine.evaluate: which child net a config means, top-k counts, the evaluation loop."""
import json
import logging

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from lib.config import ConfigError, load_config
from lib.engine.common import RunContext, RunError, build_loaders
from lib.engine.evaluate import (_valid_samples_on_rank, arch_from_board, evaluate, resolve_child,
                                 topk_correct)
from lib.models import CREAM_ARCHS
from pimm.data import ShardedBatchSampler

ARCH_43 = CREAM_ARCHS[43].arch_list()
ARCH_114 = CREAM_ARCHS[114].arch_list()


def test_resolve_child_selection_size_and_searched_paths(tmp_path):
    spec = resolve_child(load_config(None, ["NET.SELECTION", "114", "DATASET.IMAGE_SIZE", "224"]))
    assert (spec.arch, spec.image_size, spec.selection) == (ARCH_114, 160, 114)
    spec = resolve_child(load_config(None, ["NET.SELECTION", "114", "DATASET.IMAGE_SIZE", "96",
                                            "DATASET.SELECTION_IMAGE_SIZE", "False"]))
    assert spec.image_size == 96
    spec = resolve_child(load_config(None, ["NET.SELECTION", "-1", "NET.INPUT_ARCH", str(ARCH_43),
                                            "DATASET.IMAGE_SIZE", "128"]))
    assert (spec.arch, spec.image_size, spec.selection) == (ARCH_43, 128, -1)
    with pytest.raises(ConfigError, match="both set"):
        resolve_child(load_config(None, ["NET.SELECTION", "-1", "NET.INPUT_ARCH", str(ARCH_43),
                                         "NET.BOARD_JSON", "board.json"]))
    with pytest.raises(RunError, match="no file at"):
        resolve_child(load_config(None, ["NET.SELECTION", "-1",
                                         "NET.BOARD_JSON", str(tmp_path / "x")]))


def _board(tmp_path, **content):
    path = tmp_path / "board.json"
    path.write_text(json.dumps(content))
    return str(path)


def test_board_path_is_the_best_one_within_the_flops_range(tmp_path):
    paths = [{"arch": ARCH_114, "flops": 114.5, "prec1": 70.0},  # best, but above the range
             {"arch": ARCH_43, "flops": 42.4, "prec1": 60.0},
             {"arch": CREAM_ARCHS[14].arch_list(), "flops": 13.8, "prec1": 50.0}]
    board = _board(tmp_path, paths=paths, flops_minimum=0, flops_maximum=100)
    assert arch_from_board(board) == ARCH_43
    assert arch_from_board(_board(tmp_path, paths=paths, flops_minimum=0, flops_maximum=100,
                                  best_in_range={"arch": ARCH_114})) == ARCH_114
    with pytest.raises(RunError, match=r"FLOPs range \[0.0, 10.0\]"):
        arch_from_board(_board(tmp_path, paths=paths, flops_minimum=0, flops_maximum=10))
    with pytest.raises(RunError, match="no 'paths' list"):
        arch_from_board(_board(tmp_path, board=[]))


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
    _, loader = build_loaders(cfg, ctx, 32, train=False)
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


def test_test_weights_are_ema_when_present_and_plain_otherwise(tmp_path):
    from lib.engine.evaluate import ChildSpec, load_weights_for_test
    from lib.models import build_childnet

    arch = CREAM_ARCHS[14].arch_list()
    spec = ChildSpec(arch, 64, 14, "selection 14")
    plain, ema = build_childnet(14, num_classes=4), build_childnet(14, num_classes=4)
    with paddle.no_grad():
        for p in ema.parameters():
            p.set_value(p + 1.0)
    both = str(tmp_path / "both.pdparams")
    paddle.save({"state_dict": plain.state_dict(), "state_dict_ema": ema.state_dict()}, both)
    only = str(tmp_path / "plain.pdparams")
    paddle.save({"state_dict": plain.state_dict()}, only)  # a run without EMA

    for path, use_ema, expected in ((both, True, "state_dict_ema"), (both, False, "state_dict"),
                                    (only, True, "state_dict")):
        model = build_childnet(14, num_classes=4)
        assert load_weights_for_test(model, path, spec, use_ema=use_ema) == expected
        source = ema if expected == "state_dict_ema" else plain
        np.testing.assert_array_equal(model.conv_stem.weight.numpy(),
                                      source.conv_stem.weight.numpy())
    with pytest.raises(RunError, match="does not fit selection 14"):
        load_weights_for_test(build_childnet(14, num_classes=5), only, spec, use_ema=True)
