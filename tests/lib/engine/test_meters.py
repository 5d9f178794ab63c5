"""lib.engine.meters: weighted epoch means, the latest batch, counts, the log line, TensorBoard."""
import importlib.util
import logging
import math
import sys

import paddle
import pytest

from lib.config import load_config
from lib.engine.common import RunContext
from lib.engine.meters import DivergedError, EpochMeters, Meter, record_epoch


class _Scalars:
    """Records what a tensorboardX writer would be asked to write."""

    def __init__(self):
        self.written = []

    def add_scalar(self, tag, value, step):
        self.written.append((tag, value, step))


def _ctx(writer=None, log_interval=2):
    cfg = load_config(None, ["LOG_INTERVAL", str(log_interval)])
    return RunContext(cfg=cfg, mode="train", run_dir=".", logger=logging.getLogger("cream.test_meters"),
                      writer=writer, rank=0, world_size=1, distributed=False)


METERS = (Meter("loss", "Loss", precision=6), Meter("kd", "KD"), Meter("hidden", tag="meta/hidden"))


def test_means_are_weighted_by_batch_and_nan_until_measured(caplog):
    writer = _Scalars()
    meters = EpochMeters(_ctx(writer), epoch=3, num_batches=4, meters=METERS)
    assert math.isnan(meters.averages()["loss"])
    seen = []
    with caplog.at_level(logging.INFO, logger="cream.test_meters"):
        for batch_idx, batch in meters.batches(["a", "b", "c", "d"], skip=1):
            seen.append(batch)
            size = 2 if batch_idx < 3 else 4
            kd = paddle.to_tensor(0.5 * batch_idx) if batch_idx >= 2 else None  # on the device
            meters.update(size, loss=float(batch_idx), kd=kd)
            if meters.log_due(batch_idx):
                meters.log(batch_idx, lr=0.1, extra="Board: 7", scalars={"train/board_size": 7})
    assert seen == ["b", "c", "d"]  # skipped batches are drawn but not handed out
    means = meters.averages()
    assert means["loss"] == pytest.approx((1 * 2 + 2 * 2 + 3 * 4) / 8)
    assert means["kd"] == pytest.approx((1.0 * 2 + 1.5 * 4) / 6)
    assert math.isnan(means["hidden"]) and meters.counts == {"loss": 3, "kd": 2, "hidden": 0}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2  # batch 2 (interval) and the last batch
    assert lines[0].startswith("Train: 3 [   2/4]  Loss: 2.000000 (1.5000)  KD: 1.0000 (1.0000)  ")
    assert "LR: 1.000e-01" in lines[0] and lines[0].endswith("  Board: 7")
    assert "Loss: 3.000000 (2.2500)  KD: 1.5000 (1.3333)" in lines[1]
    tags = {(tag, step): value for tag, value, step in writer.written}
    assert tags[("train/loss", 3 * 4 + 3)] == pytest.approx(2.25)
    assert tags[("train/lr", 3 * 4 + 2)] == 0.1 and tags[("train/board_size", 3 * 4 + 3)] == 7
    assert not any(tag == "meta/hidden" for tag, _ in tags)  # never measured: not written


def test_a_meter_without_steps_shows_a_dash(caplog):
    meters = EpochMeters(_ctx(), epoch=0, num_batches=1, meters=METERS)
    with caplog.at_level(logging.INFO, logger="cream.test_meters"):
        meters.update(4, loss=paddle.to_tensor(2.0))
        meters.log(0, lr=1.0)
    assert "KD: -" in caplog.records[0].getMessage()
    assert meters.averages()["loss"] == 2.0


def test_progress_bar_counts_the_epoch_and_shows_the_logged_means(capsys, caplog):
    meters = EpochMeters(_ctx(log_interval=2), epoch=1, num_batches=5, meters=METERS, progress_bar=True)
    with caplog.at_level(logging.INFO, logger="cream.test_meters"):
        for batch_idx, _ in meters.batches(range(5), skip=1):
            meters.update(2, loss=float(batch_idx))
            if meters.log_due(batch_idx):
                meters.log(batch_idx, lr=0.1)
    bar = capsys.readouterr().err
    assert "Train 2/200" in bar and "5/5" in bar  # epoch 2 of EPOCHS, all batches (1 skipped)
    assert "Loss=2.5000" in bar  # the epoch's mean at the last log step
    assert len(caplog.records) == 2  # the log lines are still written
    # a loop that runs another count than EPOCHS (cosine cooldown, P-DARTS stages) says so
    meters = EpochMeters(_ctx(), epoch=0, num_batches=1, meters=METERS, progress_bar=True, num_epochs=9)
    for _ in meters.batches(range(1)):
        pass
    assert "Train 1/9" in capsys.readouterr().err
    # off by default where the output is not a terminal (here: captured)
    assert not EpochMeters(_ctx(), epoch=0, num_batches=1, meters=METERS).progress_bar


def test_record_epoch_writes_the_summary_and_the_plots(tmp_path, monkeypatch, caplog):
    ctx = _ctx()
    ctx.run_dir = str(tmp_path)
    record_epoch(ctx, 0, {"loss": 2.0, "prec1": 20.0}, {"loss": 1.9, "prec1": 30.0})
    with open(tmp_path / "summary.csv") as f:
        assert f.read().splitlines() == ["epoch,train_loss,train_prec1,eval_loss,eval_prec1",
                                         "0,2.0,20.0,1.9,30.0"]
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "training_curves.png").stat().st_size > 1000
    # without matplotlib the run goes on and says once how to get the plots
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with caplog.at_level(logging.WARNING, logger="cream.test_meters"):
        record_epoch(ctx, 1, {"loss": 1.5, "prec1": 40.0}, {"loss": 1.4, "prec1": 45.0})
        record_epoch(ctx, 2, {"loss": 1.2, "prec1": 50.0}, {"loss": 1.1, "prec1": 55.0})
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "pip install matplotlib" in warnings[0] and "tools/plot.py" in warnings[0]
    with open(tmp_path / "summary.csv") as f:
        assert len(f.read().splitlines()) == 4


@pytest.mark.parametrize("on_device", [True, False])
def test_the_first_non_finite_loss_stops_at_the_next_log_step_with_its_step_and_lr(on_device):
    meters = EpochMeters(_ctx(log_interval=4), epoch=2, num_batches=8, meters=METERS)
    losses = [2.0, 1.5, 1.0, float("nan"), float("inf"), 3.0, 2.0, 1.0]
    with pytest.raises(DivergedError) as stop:
        for batch_idx, _ in meters.batches(range(8), skip=1):
            loss = losses[batch_idx]
            meters.update(4, lr=0.1 * batch_idx, loss=paddle.to_tensor(loss) if on_device else loss)
            if meters.log_due(batch_idx):
                meters.log(batch_idx, lr=0.0)
    assert batch_idx == 4  # the first log step after it
    assert str(stop.value) == (
        "training diverged: loss nan at epoch 2, step 3 (LR 3.000e-01); stopped before saving "
        "anything trained after it, so a rerun resumes from the last finite checkpoint. Lower LR "
        "(or check the data) and run again")


def test_finite_losses_pass_the_check_and_an_unwatched_meter_may_be_nan():
    meters = EpochMeters(_ctx(), epoch=0, num_batches=3, meters=METERS)
    for batch_idx, _ in meters.batches(range(3)):
        meters.update(2, lr=0.1, loss=paddle.to_tensor(1.0 + batch_idx), kd=float("nan"))
        meters.check_finite()
    assert meters.counts["loss"] == 3
