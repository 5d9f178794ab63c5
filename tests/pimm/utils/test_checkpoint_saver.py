"""CheckpointSaver: format, top-k ranking both ways, last/model_best, recovery, restart, crashes."""
import json
import os

import numpy as np
import paddle
import pytest
from paddle.utils import unique_name
from yacs.config import CfgNode

from pimm.optim import create_optimizer
from pimm.scheduler import StepLRScheduler
from pimm.utils import CheckpointSaver, ModelEma, NonFiniteStateError


def build_run():
    with unique_name.guard():
        model = paddle.nn.Sequential(paddle.nn.Linear(2, 3), paddle.nn.BatchNorm1D(3))
    opt = create_optimizer({"OPT": "sgd", "LR": 0.1, "WEIGHT_DECAY": 1e-4}, model)
    return model, opt


def make_saver(tmp_path, model=None, opt=None, **kw):
    if model is None:
        model, opt = build_run()
    kw.setdefault("max_history", 3)
    return CheckpointSaver(model, opt, checkpoint_dir=str(tmp_path / "ckpt"),
                           recovery_dir=str(tmp_path / "rec"), **kw)


def ckpt_epochs(tmp_path):
    names = os.listdir(tmp_path / "ckpt")
    return sorted(int(n[len("checkpoint-"):-len(".pdparams")]) for n in names
                  if n.startswith("checkpoint-") and n.endswith(".pdparams"))


def epoch_of(path):
    return paddle.load(str(path))["epoch"]


def test_file_format(tmp_path):
    model, opt = build_run()
    ema = ModelEma(model)
    sched = StepLRScheduler(opt, decay_t=1, decay_rate=0.5)
    cfg = CfgNode({"MODEL": "tiny", "LR": 0.1, "NET": CfgNode({"SELECTION": 14})})
    saver = make_saver(tmp_path, model, opt, args=cfg, model_ema=ema, scheduler=sched)
    model.eval()
    model(paddle.ones([4, 2])).sum().backward()
    opt.step()
    saver.save_checkpoint(0, metric=paddle.to_tensor(12.5), extra_state={"board": [1, 2]})
    ckpt = paddle.load(str(tmp_path / "ckpt" / "last.pdparams"))
    assert set(ckpt) == {"state_dict", "state_dict_ema", "optimizer", "scheduler", "epoch",
                         "version", "arch", "args", "metric", "board"}
    assert (ckpt["epoch"], ckpt["version"], ckpt["arch"], ckpt["metric"]) == (0, 2, "tiny", 12.5)
    assert type(ckpt["args"]) is dict and type(ckpt["args"]["NET"]) is dict
    assert ckpt["args"]["NET"]["SELECTION"] == 14
    assert set(ckpt["state_dict"]) == set(model.state_dict())
    np.testing.assert_array_equal(ckpt["state_dict"]["0.weight"].numpy(),
                                  model[0].weight.numpy())
    assert sorted(ckpt["optimizer"]) == sorted(opt.state_dict())
    assert ckpt["scheduler"]["type"] == "StepLRScheduler"
    assert ckpt["board"] == [1, 2]
    with pytest.raises(ValueError, match=r"\['epoch'\]"):
        saver.save_checkpoint(1, extra_state={"epoch": 3})


@pytest.mark.parametrize("decreasing", [False, True])
def test_top_k_retention_and_best(tmp_path, decreasing):
    metrics = [5.0, 7.0, 6.0, 9.0, 4.0, 8.0, 7.5]
    if decreasing:  # the same ranking expressed as a loss
        metrics = [10.0 - m for m in metrics]
    saver = make_saver(tmp_path, decreasing=decreasing)
    results = [saver.save_checkpoint(epoch, metric) for epoch, metric in enumerate(metrics)]
    # accuracy 9 at epoch 3 is the best; top-3 are epochs 3 (9), 5 (8), 6 (7.5)
    assert ckpt_epochs(tmp_path) == [3, 5, 6]
    assert [os.path.basename(p) for p, _ in saver.checkpoint_files] == [
        "checkpoint-3.pdparams", "checkpoint-5.pdparams", "checkpoint-6.pdparams"]
    assert results[-1] == (metrics[3], 3)
    assert results[0] == (metrics[0], 0) and results[1] == (metrics[1], 1)
    assert epoch_of(tmp_path / "ckpt" / "model_best.pdparams") == 3
    assert epoch_of(tmp_path / "ckpt" / "last.pdparams") == 6
    for epoch in (3, 5, 6):
        ckpt = paddle.load(str(tmp_path / "ckpt" / f"checkpoint-{epoch}.pdparams"))
        assert (ckpt["epoch"], ckpt["metric"]) == (epoch, metrics[epoch])


def test_equal_metric_does_not_displace_and_none_metrics_keep_newest(tmp_path):
    saver = make_saver(tmp_path / "a", max_history=2)
    for epoch, metric in enumerate([3.0, 3.0, 3.0]):
        saver.save_checkpoint(epoch, metric)
    assert ckpt_epochs(tmp_path / "a") == [0, 1]
    assert saver.best_epoch == 0
    unranked = make_saver(tmp_path / "b", max_history=2)
    for epoch in range(4):
        assert unranked.save_checkpoint(epoch) == (None, None)
    assert ckpt_epochs(tmp_path / "b") == [2, 3]
    assert not (tmp_path / "b" / "ckpt" / "model_best.pdparams").exists()


def test_last_and_best_hold_the_model_of_their_epoch(tmp_path):
    model, opt = build_run()
    saver = make_saver(tmp_path, model, opt)
    for epoch, metric in enumerate([1.0, 3.0, 2.0]):
        with paddle.no_grad():
            model[0].weight.set_value(paddle.full_like(model[0].weight, float(epoch)))
        saver.save_checkpoint(epoch, metric)
    best = paddle.load(str(tmp_path / "ckpt" / "model_best.pdparams"))
    last = paddle.load(str(tmp_path / "ckpt" / "last.pdparams"))
    np.testing.assert_array_equal(best["state_dict"]["0.weight"].numpy(), 1.0)
    np.testing.assert_array_equal(last["state_dict"]["0.weight"].numpy(), 2.0)


def test_ranking_survives_restart(tmp_path):
    saver = make_saver(tmp_path)
    for epoch, metric in enumerate([5.0, 7.0, 6.0, 9.0]):
        saver.save_checkpoint(epoch, metric)
    assert ckpt_epochs(tmp_path) == [1, 2, 3]
    # a new process resumes after epoch 3: the ranking comes back from disk
    restarted = make_saver(tmp_path)
    assert [(os.path.basename(p), m) for p, m in restarted.checkpoint_files] == [
        ("checkpoint-3.pdparams", 9.0), ("checkpoint-1.pdparams", 7.0),
        ("checkpoint-2.pdparams", 6.0)]
    assert (restarted.best_metric, restarted.best_epoch) == (9.0, 3)
    # 6.5 enters and pushes out epoch 2 (6.0); a fresh timm saver would have kept all five files
    assert restarted.save_checkpoint(4, 6.5) == (9.0, 3)
    assert ckpt_epochs(tmp_path) == [1, 3, 4]
    # 8.0 is not a new best: model_best must still be epoch 3
    restarted.save_checkpoint(5, 8.0)
    assert epoch_of(tmp_path / "ckpt" / "model_best.pdparams") == 3


def test_ranking_rebuilt_from_files_without_index(tmp_path):
    saver = make_saver(tmp_path)
    for epoch, metric in enumerate([5.0, 7.0, 6.0]):
        saver.save_checkpoint(epoch, metric)
    os.remove(tmp_path / "ckpt" / "checkpoint_index.json")
    restarted = make_saver(tmp_path)
    assert [m for _, m in restarted.checkpoint_files] == [7.0, 6.0, 5.0]
    assert (restarted.best_metric, restarted.best_epoch) == (7.0, 1)


def test_resave_of_an_epoch_replaces_its_file(tmp_path):
    saver = make_saver(tmp_path, max_history=2)
    for epoch, metric in enumerate([5.0, 7.0]):
        saver.save_checkpoint(epoch, metric)
    # resumed from epoch 0: epoch 1 runs again and now scores lower than epoch 0
    restarted = make_saver(tmp_path, max_history=2)
    restarted.save_checkpoint(1, 4.0)
    assert [m for _, m in restarted.checkpoint_files] == [5.0, 4.0]
    assert paddle.load(str(tmp_path / "ckpt" / "checkpoint-1.pdparams"))["metric"] == 4.0
    restarted.save_checkpoint(2, 6.0)  # pushes out the re-run epoch 1, whatever its old score
    assert ckpt_epochs(tmp_path) == [0, 2]


def test_direction_change_is_refused(tmp_path):
    make_saver(tmp_path).save_checkpoint(0, 1.0)
    with pytest.raises(ValueError, match="decreasing=False"):
        make_saver(tmp_path, decreasing=True)


def test_recovery_keeps_only_newest_and_is_found(tmp_path):
    saver = make_saver(tmp_path)
    assert saver.find_recovery() == ""
    for epoch, batch in [(8, 100), (9, 50), (10, 0), (10, 20)]:
        path = saver.save_recovery(epoch, batch_idx=batch)
    assert os.listdir(tmp_path / "rec") == ["recovery-10-20.pdparams"]
    assert saver.find_recovery() == path
    ckpt = paddle.load(path)
    assert (ckpt["epoch"], ckpt["batch_idx"], ckpt["metric"]) == (10, 20, None)
    # numeric, not lexical, order when several exist (e.g. copied in by hand)
    paddle.save({"epoch": 9}, str(tmp_path / "rec" / "recovery-9-999.pdparams"))
    assert make_saver(tmp_path).find_recovery() == path


def test_file_names_are_answered_without_a_saver(tmp_path):
    """What a resuming rank asks: the static names match what a saver writes into one folder."""
    folder = tmp_path / "run"
    folder.mkdir()
    assert CheckpointSaver.resume_file(str(folder)) is None
    assert CheckpointSaver.newest_recovery(str(folder)) is None
    model, opt = build_run()
    saver = CheckpointSaver(model, opt, checkpoint_dir=str(folder), recovery_dir=str(folder))
    saver.save_checkpoint(3, 1.0)
    assert CheckpointSaver.last_file(str(folder)) == saver.last_path
    assert CheckpointSaver.resume_file(str(folder)) == saver.last_path
    early = saver.save_recovery(3, batch_idx=10)  # taken during epoch 3, before it ended
    assert CheckpointSaver.newest_recovery(str(folder)) == (3, 10, early)
    assert CheckpointSaver.resume_file(str(folder)) == saver.last_path
    later = saver.save_recovery(4, batch_idx=2)  # mid epoch 4: newer than last
    assert CheckpointSaver.resume_file(str(folder)) == later
    assert CheckpointSaver.newest_recovery(str(folder), extension=".other") is None


def test_crash_between_write_and_rename_leaves_previous_files(tmp_path, monkeypatch):
    model, opt = build_run()
    saver = make_saver(tmp_path, model, opt)
    for epoch, metric in enumerate([5.0, 7.0]):
        saver.save_checkpoint(epoch, metric)
    before = sorted(os.listdir(tmp_path / "ckpt"))
    last_before = paddle.load(str(tmp_path / "ckpt" / "last.pdparams"))

    real_replace = os.replace
    calls = {"n": 0}

    def crash_on(n):
        def replace(src, dst):
            calls["n"] += 1
            if calls["n"] == n:
                raise OSError("simulated crash")
            return real_replace(src, dst)
        return replace

    # crash before `last` is renamed into place
    monkeypatch.setattr(os, "replace", crash_on(1))
    with pytest.raises(OSError, match="simulated crash"):
        saver.save_checkpoint(2, 9.0)
    monkeypatch.setattr(os, "replace", real_replace)
    assert sorted(os.listdir(tmp_path / "ckpt")) == before  # no temp left, nothing new
    assert paddle.load(str(tmp_path / "ckpt" / "last.pdparams"))["epoch"] == last_before["epoch"]

    # crash after `last` but before checkpoint-2 / model_best / the index are in place
    calls["n"] = 0
    monkeypatch.setattr(os, "replace", crash_on(2))
    with pytest.raises(OSError):
        saver.save_checkpoint(2, 9.0)
    monkeypatch.setattr(os, "replace", real_replace)
    for name in os.listdir(tmp_path / "ckpt"):
        if name.endswith(".pdparams"):
            assert "epoch" in paddle.load(str(tmp_path / "ckpt" / name)), name
    with open(tmp_path / "ckpt" / "checkpoint_index.json") as f:
        assert [c["epoch"] for c in json.load(f)["checkpoints"]] == [1, 0]
    # the next saver (a resumed run, which continues after epoch 2) finishes that save
    restarted = make_saver(tmp_path, model, opt)
    assert [m for _, m in restarted.checkpoint_files] == [9.0, 7.0, 5.0]
    assert ckpt_epochs(tmp_path) == [0, 1, 2]
    assert epoch_of(tmp_path / "ckpt" / "model_best.pdparams") == 2
    with open(tmp_path / "ckpt" / "checkpoint_index.json") as f:
        assert json.load(f)["last_epoch"] == 2


def test_stale_temp_files_from_a_crash_are_removed(tmp_path):
    saver = make_saver(tmp_path)
    saver.save_checkpoint(0, 1.0)
    stale = tmp_path / "ckpt" / ".last.pdparams.abc123.tmp"
    stale.write_bytes(b"half")
    foreign = tmp_path / "ckpt" / ".notes.txt.abc123.tmp"
    foreign.write_bytes(b"not ours")
    make_saver(tmp_path)
    assert not stale.exists() and foreign.exists()


def test_resume_falls_back_from_a_damaged_last_to_the_newest_intact_file(tmp_path, caplog):
    folder = tmp_path / "run"
    folder.mkdir()
    model, opt = build_run()
    saver = CheckpointSaver(model, opt, checkpoint_dir=str(folder), recovery_dir=str(folder))
    for epoch, metric in enumerate([5.0, 7.0, 6.0]):
        saver.save_checkpoint(epoch, metric)
    last = saver.last_path
    with open(last, "rb") as f:
        intact = f.read()
    os.remove(last)  # last was a hard link of checkpoint-2: write a damaged copy in its place
    with open(last, "wb") as f:
        f.write(intact[:len(intact) // 2])  # truncated
    with caplog.at_level("WARNING", logger="pimm.utils.checkpoint_saver"):
        assert CheckpointSaver.resume_file(str(folder)) == str(folder / "checkpoint-2.pdparams")
    assert f"cannot resume from {last}" in caplog.text
    assert f"resuming from {folder / 'checkpoint-2.pdparams'} instead" in caplog.text
    # a recovery point within epoch 2 is older than checkpoint-2; one of epoch 3 is newer
    saver.save_recovery(2, batch_idx=4)
    assert CheckpointSaver.resume_file(str(folder)) == str(folder / "checkpoint-2.pdparams")
    recovery = saver.save_recovery(3, batch_idx=1)
    assert CheckpointSaver.resume_file(str(folder)) == recovery
    # garbage everywhere: one error naming the folder and last
    for name in os.listdir(folder):
        if name.endswith(".pdparams"):
            os.remove(folder / name)
            (folder / name).write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match=r"cannot resume from the run folder .*last.pdparams is "
                                         r"unreadable .* no other checkpoint there is intact"):
        CheckpointSaver.resume_file(str(folder))


def test_a_diverged_state_is_never_written(tmp_path):
    model, opt = build_run()
    saver = make_saver(tmp_path, model, opt)
    saver.save_checkpoint(0, 1.0)
    with paddle.no_grad():
        model[0].weight.set_value(paddle.full_like(model[0].weight, float("nan")))
    before = {name: (tmp_path / "ckpt" / name).read_bytes() for name in os.listdir(tmp_path / "ckpt")}
    with pytest.raises(NonFiniteStateError, match=r"training diverged: the weights of epoch 1 "
                       r"are not finite \(state_dict entry '0.weight' holds NaN or Inf\); "
                       r"refusing to save them"):
        saver.save_checkpoint(1, 2.0)
    with pytest.raises(NonFiniteStateError, match="the weights of epoch 1, batch 3 are not"):
        saver.save_recovery(1, batch_idx=3)
    assert {n: (tmp_path / "ckpt" / n).read_bytes() for n in os.listdir(tmp_path / "ckpt")} == before
    assert not os.path.exists(tmp_path / "rec") or os.listdir(tmp_path / "rec") == []
