"""The search engine end to end on tiny demo data: board, distillation, meta updates, export, resume.

One module-scoped pair of runs is shared by the tests: run A trains two epochs straight; run B is
stopped when its second epoch starts and then resumed by the same command (AUTO_RESUME).
"""
import csv
import json
import os
import re
from types import SimpleNamespace

import numpy as np
import paddle
import pytest

import lib.engine.search as search_engine
import lib.engine.supernet as supernet_engine
from lib.config import ConfigError, load_config
from lib.engine.common import finish_run, prepare_run
from lib.engine.search import SearchOptions
from lib.engine.supernet import average_gradients, create_search_optimizer, recalibrated_batch_norm
from pimm.scheduler import LinearDecayLRScheduler

DEMO = os.path.join(os.path.dirname(__file__), "..", "..", "..", "experiments", "configs", "train", "demo.yaml")
FLOPS_MAX = 115
POOL = 3


def _config(data_dir, save_path, *overrides):
    # batches of 4 images: the demo's LR would diverge to NaN within an epoch
    return load_config(DEMO, [
        "DATA_DIR", data_dir, "SAVE_PATH", save_path, "MODEL", "search", "EPOCHS", "2",
        "DATASET.NUM_CLASSES", "4", "DATASET.IMAGE_SIZE", "32", "DATASET.BATCH_SIZE", "4",
        "DATASET.VAL_BATCH_MUL", "4", "WORKERS", "0", "LOG_INTERVAL", "1",
        "SUPERNET.SLICE", "2", "SUPERNET.POOL_SIZE", str(POOL), "SUPERNET.UPDATE_ITER", "2",
        "SUPERNET.META_STA_EPOCH", "-1", "SUPERNET.VAL_PATHS", "2", "SUPERNET.HOW_TO_PROB", "teacher",
        "SUPERNET.FLOPS_MAXIMUM", str(FLOPS_MAX), "SUPERNET.TEACHER_MIN_PREC1", "0.0", "SUPERNET.WARMUP_STEPS", "2",
        "LR", "0.02",
        *overrides])


class _Spy:
    """Records what the search does, through thin wrappers around its collaborators."""

    def __init__(self, monkeypatch, stop_at_epoch=None):
        self.meta_updates = []  # (meta weights before, after) of every meta-matching update
        self.consider_calls = 0
        self.sorted_after_every_entry = True
        spy = self
        update = search_engine.MetaMatchingNetwork.update
        consider = search_engine.PrioritizedBoard.consider
        train_epoch = search_engine._Search.train_epoch

        def meta_weights(supernet):
            return [p.numpy().copy() for p in supernet.meta_parameters()]

        def spied_update(self, supernet, *args, **kwargs):
            before = meta_weights(supernet)
            result = update(self, supernet, *args, **kwargs)
            spy.meta_updates.append((before, meta_weights(supernet)))
            return result

        def spied_consider(self, *args, **kwargs):
            entered = consider(self, *args, **kwargs)
            spy.consider_calls += 1
            ranks = [(-e.prec1, e.flops) for e in self.entries]
            spy.sorted_after_every_entry &= ranks == sorted(ranks) and len(ranks) <= self.pool_size
            return entered

        def stopping_train_epoch(self, epoch, *args, **kwargs):
            if epoch == stop_at_epoch:
                raise KeyboardInterrupt
            return train_epoch(self, epoch, *args, **kwargs)

        monkeypatch.setattr(search_engine.MetaMatchingNetwork, "update", spied_update)
        monkeypatch.setattr(search_engine.PrioritizedBoard, "consider", spied_consider)
        monkeypatch.setattr(search_engine._Search, "train_epoch", stopping_train_epoch)


def _run(cfg):
    ctx = prepare_run(cfg, "train")
    try:
        return search_engine.run(ctx), ctx.run_dir
    finally:
        finish_run(ctx)


@pytest.fixture(scope="module")
def runs(demo_data_factory, tmp_path_factory):
    data = demo_data_factory(num_classes=4, train_per_class=6, val_per_class=2, image_size=32)
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        out["spy_a"] = _Spy(mp)
        out["a"], out["dir_a"] = _run(_config(data, str(tmp_path_factory.mktemp("run_a"))))
    save_b = str(tmp_path_factory.mktemp("run_b"))
    with pytest.MonkeyPatch.context() as mp:
        _Spy(mp, stop_at_epoch=1)
        with pytest.raises(KeyboardInterrupt):
            _run(_config(data, save_b))
    out["dir_b"] = os.path.join(save_b, "search")
    with open(os.path.join(out["dir_b"], "board.json")) as f:
        out["board_b_at_stop"] = json.load(f)
    with pytest.MonkeyPatch.context() as mp:
        out["spy_b"] = _Spy(mp)
        out["b"], _ = _run(_config(data, save_b))
    return out


def _board(run_dir):
    with open(os.path.join(run_dir, "board.json")) as f:
        return json.load(f)


def test_board_fills_sorted_within_the_flops_range(runs):
    spy, board = runs["spy_a"], _board(runs["dir_a"])
    assert spy.consider_calls > 0 and spy.sorted_after_every_entry
    paths = board["paths"]
    assert len(paths) == POOL  # full
    assert [p["prec1"] for p in paths] == sorted((p["prec1"] for p in paths), reverse=True)
    assert board["flops_minimum"] == 0 and board["flops_maximum"] == FLOPS_MAX and board["epoch"] == 1
    for p in paths:
        assert 0 <= p["flops"] <= FLOPS_MAX
        assert len(p["arch"]) == 7 and p["arch"][0] == [0] and p["arch"][-1] == [0]
        assert 0.5 < p["params"] < 5
    assert {k: v for k, v in board["best_in_range"].items() if k != "val_prec1"} == paths[0]
    assert 0 <= board["best_in_range"]["val_prec1"] <= 100  # validated at the end of the epoch
    # the validated random paths, drawn within the budget, with their validation top-1
    assert len(board["validated"]) == 2
    assert all(0 <= p["flops"] <= FLOPS_MAX and 0 <= p["prec1"] <= 100 for p in board["validated"])
    assert runs["a"]["board"] == board


def test_kd_and_meta_updates_are_active_and_only_the_meta_step_moves_the_meta_layer(runs):
    spy = runs["spy_a"]
    # UPDATE_ITER 2 with 6 steps per epoch: batches 2 and 4 of both epochs (once the board has paths)
    assert len(spy.meta_updates) >= 3
    for before, after in spy.meta_updates:
        assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before))
    # between two meta updates nothing else (the main loss included) moves the meta layer
    for (_, after), (before_next, _) in zip(spy.meta_updates, spy.meta_updates[1:]):
        for a, b in zip(after, before_next):
            np.testing.assert_array_equal(a, b)
    with open(os.path.join(runs["dir_a"], "train.log")) as f:
        log = f.read()
    kd_values = [float(v) for v in re.findall(r"KD-Loss: ([0-9.]+) ", log)]
    assert kd_values and all(v > 0 for v in kd_values)
    with open(os.path.join(runs["dir_a"], "summary.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(float(r["train_kd_loss"]) > 0 and float(r["train_meta_updates"]) >= 1 for r in rows)
    assert all(0 <= float(r["eval_prec1"]) <= 100 and float(r["eval_best_prec1"]) >= 0 for r in rows)


def test_resume_continues_with_the_same_board_and_matches_an_uninterrupted_run(runs):
    stopped = runs["board_b_at_stop"]
    assert stopped["epoch"] == 0 and stopped["paths"]
    with open(os.path.join(runs["dir_b"], "train.log")) as f:
        log = f.read()
    assert re.search(r"resumed from .*last\.pdparams: epoch 1\n", log)
    assert f"resumed board: {len(stopped['paths'])} paths" in log
    # the resumed run starts from the saved board and ends exactly where the uninterrupted one does
    assert _board(runs["dir_b"]) == _board(runs["dir_a"])
    a = paddle.load(os.path.join(runs["dir_a"], "last.pdparams"))
    b = paddle.load(os.path.join(runs["dir_b"], "last.pdparams"))
    for key, value in a["state_dict"].items():
        np.testing.assert_array_equal(b["state_dict"][key].numpy(), value.numpy(), err_msg=key)
    assert b["scheduler"] == a["scheduler"]
    assert runs["b"]["eval"] == pytest.approx(runs["a"]["eval"])


def test_checkpoint_holds_board_sampler_scheduler_and_optimizer(runs):
    state = paddle.load(os.path.join(runs["dir_a"], "last.pdparams"))
    assert state["epoch"] == 1 and state["version"] == 2
    assert [e["arch"] for e in state["board"]["entries"]] == [p["arch"] for p in _board(runs["dir_a"])["paths"]]
    entry = state["board"]["entries"][0]
    assert entry["images"].shape == (2, 3, 32, 32) and entry["features"].shape == (2, 4)
    np.testing.assert_allclose(entry["features"].sum(axis=1), 1.0, rtol=1e-5)  # softmax rows
    assert "bit_generator" in state["path_sampler"]
    assert state["scheduler"]["last_lr"] == pytest.approx(0.0, abs=1e-12)  # decayed to 0 at the end
    assert state["optimizer"]


def test_spos_baseline_trains_without_teacher_or_meta_updates(demo_data_factory, tmp_path, monkeypatch):
    data = demo_data_factory(num_classes=4, train_per_class=6, val_per_class=2, image_size=32)
    spy = _Spy(monkeypatch)
    cfg = _config(data, str(tmp_path), "EPOCHS", "1", "SUPERNET.PICK_METHOD", "none",
                  "SUPERNET.HOW_TO_PROB", "even")
    result, run_dir = _run(cfg)
    assert spy.meta_updates == []
    assert result["train"]["kd_steps"] == 0 and result["train"]["meta_updates"] == 0
    assert np.isnan(result["train"]["kd_loss"])
    with open(os.path.join(run_dir, "train.log")) as f:
        assert "KD-Loss: -" in f.read()
    assert _board(run_dir)["paths"]  # the board still records candidates


def test_only_the_sampled_path_moves(demo_data_factory, tmp_path):
    """Blocks off the path keep their weights and optimizer state: gradients are cleared to None
    and Paddle's optimizers skip parameters without one (no momentum, no weight decay)."""
    data = demo_data_factory(num_classes=4, train_per_class=6, val_per_class=2, image_size=32)
    cfg = _config(data, str(tmp_path), "SUPERNET.PICK_METHOD", "none", "SUPERNET.HOW_TO_PROB", "even",
                  "SUPERNET.META_STA_EPOCH", "5")
    ctx = prepare_run(cfg, "train")
    try:
        search = search_engine._Search(ctx, SearchOptions.from_config(cfg))
        supernet, optimizer = search.supernet, search.optimizer
        initial = {k: v.numpy().copy() for k, v in supernet.state_dict().items()}
        sampled = []
        sample = search.sampler.sample
        search.sampler.sample = lambda board=None: sampled.append(sample(board)) or sampled[-1]
        search.train_epoch(0)
    finally:
        finish_run(ctx)
    used = {(s, l, c) for arch in sampled for s, stage in enumerate(arch) for l, c in enumerate(stage)}
    moved = unmoved = 0
    for key, value in supernet.state_dict().items():
        match = re.match(r"blocks\.(\d+)\.(\d+)\.(\d+)\.", key)
        if not match or key.endswith(("_mean", "_variance")):
            continue
        if tuple(map(int, match.groups())) in used:
            moved += not np.array_equal(value.numpy(), initial[key])
        else:
            np.testing.assert_array_equal(value.numpy(), initial[key], err_msg=key)
            unmoved += 1
    assert moved > 0 and unmoved > 0
    velocity = optimizer.state_dict()
    for name, param in supernet.named_parameters():
        match = re.match(r"blocks\.(\d+)\.(\d+)\.(\d+)\.", name)
        if match and tuple(map(int, match.groups())) not in used and not param.stop_gradient:
            moments = [v for k, v in velocity.items() if k.startswith(param.name + "_velocity")]
            assert moments and all(float(m.abs().max()) == 0.0 for m in moments)


def test_distillation_waits_for_teachers_better_than_the_threshold(demo_data_factory, tmp_path, monkeypatch):
    data = demo_data_factory(num_classes=4, train_per_class=6, val_per_class=2, image_size=32)
    schedules = []
    monkeypatch.setattr(supernet_engine, "LinearDecayLRScheduler",
                        lambda *args, **kwargs: schedules.append(kwargs) or LinearDecayLRScheduler(*args, **kwargs))
    result, run_dir = _run(_config(data, str(tmp_path), "SUPERNET.TEACHER_MIN_PREC1", "101.0",
                                   "SUPERNET.WARMUP_STEPS", "3"))
    assert schedules == [{"warmup_t": 3}]  # SUPERNET.WARMUP_STEPS reaches the schedule
    assert result["train"]["kd_steps"] == 0 and result["train"]["meta_updates"] == 0
    state = paddle.load(os.path.join(run_dir, "last.pdparams"))
    assert state["teachers_ready"] is False and len(state["board"]["entries"]) == POOL
    # the rule: from the first epoch whose validation finds the board's best at the threshold
    search = type("Search", (), {"teachers_ready": False,
                                 "opts": SimpleNamespace(teacher_min_prec1=30.0, distills=True)})()
    ready = search_engine._Search.update_teachers_ready
    assert not ready(search, {"prec1": 50.0, "best_prec1": float("nan")})  # board still empty
    assert not ready(search, {"best_prec1": 29.9}) and not search.teachers_ready
    assert ready(search, {"best_prec1": 30.0}) and search.teachers_ready
    assert not ready(search, {"best_prec1": 10.0}) and search.teachers_ready  # never stops again
    search.teachers_ready, search.opts.distills = False, False  # PICK_METHOD none: nothing to start
    assert not ready(search, {"best_prec1": 50.0})


@pytest.fixture(scope="module")
def supernet():
    from lib.models import build_supernet

    return build_supernet(0, 100, num_classes=4, slice=2)[0]


def test_validated_path_gets_its_own_batch_norm_statistics(supernet):
    arch = [[0], [1], [2], [3], [4], [5], [0]]
    other = [[0], [0], [0], [0], [0], [0], [0]]
    rng = np.random.RandomState(0)
    batches = [rng.randn(4, 3, 32, 32).astype("float32") * (i + 1) for i in range(3)]
    stem = supernet.bn1
    off_path = supernet.blocks[1][0][0].bn1  # choice 0 of stage 1: not on arch
    before = {k: v.numpy().copy() for k, v in supernet.state_dict().items()}
    # the stem's batch statistics of each batch, from the same forward
    captured = []
    hook = stem.register_forward_pre_hook(lambda layer, inputs: captured.append(inputs[0].numpy()))
    supernet.eval()
    with recalibrated_batch_norm(supernet, arch, batches):
        hook.remove()
        means = [x.mean(axis=(0, 2, 3)) for x in captured]
        np.testing.assert_allclose(stem._mean.numpy(), np.mean(means, axis=0), rtol=1e-4, atol=1e-6)
        # torch's unbiased batch variances, averaged (what SPOS's recalibration stores)
        variances = [x.astype(np.float64).var(axis=(0, 2, 3), ddof=1) for x in captured]
        np.testing.assert_allclose(stem._variance.numpy(), np.mean(variances, axis=0), rtol=1e-5)
        np.testing.assert_array_equal(off_path._mean.numpy(), before["blocks.1.0.0.bn1._mean"])
        assert not supernet.training  # the caller's mode
        recalibrated = supernet(paddle.to_tensor(batches[0]), arch).numpy()
    for key, value in supernet.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), before[key], err_msg=key)
    assert stem._momentum == pytest.approx(0.9)  # pimm's BatchNorm2d(momentum=0.1), restored
    assert not np.allclose(recalibrated, supernet(paddle.to_tensor(batches[0]), arch).numpy())
    with recalibrated_batch_norm(supernet, other, []):  # no batches: running statistics
        np.testing.assert_array_equal(stem._mean.numpy(), before["bn1._mean"])


def test_search_optimizer_has_the_reference_groups(supernet):
    cfg = load_config(DEMO, ["LR", "0.2", "META_LR", "0.001", "WEIGHT_DECAY", "3e-5"])
    optimizer = create_search_optimizer(cfg, supernet)
    groups = optimizer._param_groups
    meta_ids = {id(p) for p in supernet.meta_parameters()}
    assert len(groups) == 4
    student, meta = groups[:2], groups[2:]
    # Paddle turns a group's weight_decay into its regularization coefficient
    assert [g["regularization_coeff"] for g in student] == [0.0, 3e-5]
    assert all(id(p) not in meta_ids for g in student for p in g["params"])
    assert all(len(p.shape) == 1 for p in student[0]["params"])  # biases and batch norm
    assert [g["regularization_coeff"] for g in meta] == [0.0, 0.0]
    assert all(g["learning_rate"] == pytest.approx(0.001 / 0.2) for g in meta)
    assert {id(p) for g in meta for p in g["params"]} == meta_ids
    trainable = [p for p in supernet.parameters() if not p.stop_gradient]
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(id(p) for p in trainable)
    assert optimizer.get_lr() == 0.2


def test_average_gradients_is_a_no_op_in_one_process():
    weight = paddle.create_parameter([3], "float32")
    (weight * paddle.to_tensor([1.0, 2.0, 3.0])).sum().backward()
    average_gradients([weight], world_size=1)
    np.testing.assert_array_equal(weight.grad.numpy(), [1.0, 2.0, 3.0])


@pytest.mark.parametrize("overrides, message", [
    (["SUPERNET.PICK_METHOD", "best"], "PICK_METHOD"),
    (["SUPERNET.HOW_TO_PROB", "uniform"], "HOW_TO_PROB"),
    (["DATASET.BATCH_SIZE", "7", "SUPERNET.SLICE", "4"], "BATCH_SIZE"),
    (["BATCHNORM.SYNC_BN", "True"], "SYNC_BN"),
    (["AMP", "O2"], "AMP O2 is not supported by supernet training"),
    (["EVAL_METRICS", "top1"], "EVAL_METRICS"),
    (["SUPERNET.VAL_PATHS", "0"], "VAL_PATHS"),
    (["SUPERNET.VAL_BN_BATCHES", "-1"], "VAL_BN_BATCHES"),
    (["SUPERNET.UNIFORM_MIX", "1.5"], "UNIFORM_MIX"),
    (["SUPERNET.WARMUP_STEPS", "-1"], "WARMUP_STEPS"),
])
def test_bad_search_settings_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        SearchOptions.from_config(load_config(DEMO, overrides))


@pytest.mark.parametrize("pick_method, update_2nd, distills, meta_updates", [
    ("meta", "True", True, True),
    ("meta", "False", True, False),  # distillation with a fixed meta layer
    ("top1", "True", True, False),  # no matching score to learn (README: what differs from the reference)
    ("none", "True", False, False),
])
def test_only_meta_matching_takes_meta_updates(pick_method, update_2nd, distills, meta_updates):
    opts = SearchOptions.from_config(load_config(DEMO, ["SUPERNET.PICK_METHOD", pick_method,
                                                        "SUPERNET.UPDATE_2ND", update_2nd]))
    assert (opts.distills, opts.meta_updates) == (distills, meta_updates)


@pytest.mark.parametrize("name", ["train.yaml", "spos.yaml", "demo.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(os.path.join(os.path.dirname(DEMO), name))
    opts = SearchOptions.from_config(cfg)
    assert opts.how_to_prob == "even" or name == "demo.yaml"
    assert opts.distills == (name != "spos.yaml")


def test_the_reference_values_of_train_yaml_are_accepted():
    """train.yaml has the reference's keys; its original values (changed on purpose here) load too."""
    cfg = load_config(os.path.join(os.path.dirname(DEMO), "train.yaml"), [
        "AUTO_RESUME", "False", "RESUME_PATH", "./experiments/workspace/train/resume.pth.tar",
        "NET.EMA.USE", "True", "SUPERNET.HOW_TO_PROB", "pre_prob"])
    opts = SearchOptions.from_config(cfg)
    assert opts.how_to_prob == "pre_prob" and len(opts.pre_prob) == 6
    assert (opts.flops_minimum, opts.flops_maximum, opts.pick_method) == (0, 600, "meta")
