"""accuracy, AverageMeter, reduce_tensor (one process), update_summary, logging, out dirs."""
import csv
import logging
import os

import numpy as np
import paddle
import pytest

from pimm.utils import (AverageMeter, accuracy, get_outdir, reduce_tensor, setup_logger,
                        update_summary)


def test_accuracy_on_a_hand_made_batch():
    output = paddle.to_tensor([
        [0.1, 0.9, 0.0, 0.0],   # top1 = 1, top2 = {1, 0}
        [0.8, 0.1, 0.05, 0.05],  # top1 = 0, top2 = {0, 1}
        [0.2, 0.3, 0.4, 0.1],   # top1 = 2, top2 = {2, 1}
        [0.3, 0.1, 0.2, 0.4],   # top1 = 3, top2 = {3, 0}
    ])
    target = paddle.to_tensor([1, 1, 0, 0], dtype="int64")
    top1, top2, top9 = accuracy(output, target, topk=(1, 2, 9))
    assert isinstance(top1, paddle.Tensor) and top1.shape == []
    assert float(top1) == pytest.approx(25.0)   # only sample 0
    assert float(top2) == pytest.approx(75.0)   # samples 0, 1, 3
    assert float(top9) == pytest.approx(100.0)  # k above the class count: every sample
    # [B, 1] targets (as some loaders give) work the same
    assert float(accuracy(output, target.reshape([-1, 1]))[0]) == pytest.approx(25.0)


def test_average_meter_weights_by_count():
    meter = AverageMeter()
    meter.update(2.0, n=1)
    meter.update(5.0, n=3)
    assert (meter.val, meter.sum, meter.count) == (5.0, 17.0, 4)
    assert meter.avg == pytest.approx(4.25)
    meter.reset()
    assert (meter.avg, meter.count) == (0.0, 0)


def test_reduce_tensor_in_one_process_is_a_copy():
    t = paddle.to_tensor([2.0, 4.0])
    out = reduce_tensor(t, 1)
    np.testing.assert_array_equal(out.numpy(), [2.0, 4.0])
    out[0] = 7.0
    assert float(t[0]) == 2.0
    with pytest.raises(RuntimeError, match="init_distributed"):
        reduce_tensor(t, 2)


def test_update_summary_writes_header_once_and_rows(tmp_path):
    path = str(tmp_path / "summary.csv")
    update_summary(0, {"loss": paddle.to_tensor(2.5)}, {"loss": 2.0, "prec1": 10.0}, path)
    update_summary(1, {"loss": 1.5}, {"loss": 1.25, "prec1": np.float32(20.0)}, path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["epoch", "train_loss", "eval_loss", "eval_prec1"],
                    ["0", "2.5", "2.0", "10.0"],
                    ["1", "1.5", "1.25", "20.0"]]


def test_update_summary_replaces_a_rerun_epoch_and_drops_the_rows_after_it(tmp_path):
    """A run resumed after a crash between the summary and the checkpoint trains that epoch
    again: its row is replaced, not repeated, and a new column appears empty in older rows."""
    path = str(tmp_path / "summary.csv")
    for epoch in range(3):
        update_summary(epoch, {"loss": 3.0 - epoch}, {"prec1": 10.0 * epoch}, path)
    update_summary(1, {"loss": 1.75, "skipped_images": 2}, {"prec1": 12.5}, path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["epoch", "train_loss", "eval_prec1", "train_skipped_images"],
                    ["0", "3.0", "0.0", ""],
                    ["1", "1.75", "12.5", "2"]]
    assert [name for name in os.listdir(tmp_path)] == ["summary.csv"]  # no temporary left


def test_setup_logger_rank0_file_and_quiet_ranks(tmp_path, capsys):
    log_file = tmp_path / "logs" / "train.log"
    logger = setup_logger("pimm-test", log_file=str(log_file), rank=0)
    setup_logger("pimm-test", log_file=str(log_file), rank=0)  # no duplicate handlers
    logger.info("hello %d", 1)
    for h in logger.handlers:
        h.flush()
    assert log_file.read_text().count("hello 1") == 1
    assert capsys.readouterr().out.count("hello 1") == 1
    other = setup_logger("pimm-test-rank1", log_file=str(tmp_path / "r1.log"), rank=1)
    other.info("info from rank 1")
    other.error("error from rank 1")
    out = capsys.readouterr().out
    assert "info from rank 1" not in out and "error from rank 1" in out
    assert not (tmp_path / "r1.log").exists()
    assert other.level == logging.ERROR


def test_get_outdir_creates_and_increments(tmp_path):
    first = get_outdir(str(tmp_path), "run")
    assert first == str(tmp_path / "run") and (tmp_path / "run").is_dir()
    assert get_outdir(str(tmp_path), "run") == first
    assert get_outdir(str(tmp_path), "run", inc=True) == first + "-1"
    assert get_outdir(str(tmp_path), "run", inc=True) == first + "-2"
