"""kill -9 at every file operation of a run's saves, then the same run again: the folder ends up
holding exactly what an uninterrupted run's holds (every checkpoint-<N>, model_best, the index,
the newest recovery file, one summary row per epoch, no temporary files).

A forked child plays the run the way the engines do (resume from ``CheckpointSaver.resume_file``,
recovery points, summary row, end-of-epoch save) and SIGKILLs itself just before its K-th
``os.replace`` / ``os.link`` / ``os.remove``; a second child reruns it to the end.
"""
import csv
import json
import os
import signal
import traceback

import numpy as np
import paddle
import pytest
from paddle.utils import unique_name

from pimm.models import read_paddle_checkpoint
from pimm.optim import create_optimizer
from pimm.utils import CheckpointSaver, file_io, remove_stale_temp_files, update_summary

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

EPOCHS, BATCHES, RECOVERY_EVERY = 3, 4, 2
# epoch 1 is a new best, epoch 2 is not; with two checkpoints kept, epoch 0 is evicted
METRICS = [5.0, 7.0, 6.0]
_MUTATIONS = ("replace", "link", "remove")


def _play_run(folder, kill_at=None):
    """One process of the run; with ``kill_at``, SIGKILL just before that file operation."""
    # what a killed process wrote stays in the page cache: flushing to disk matters for power
    # cuts only, and would make this test ten times slower
    file_io._fsync_path = file_io._fsync_dir = lambda path: None
    if kill_at is not None:
        count = [0]
        for name in _MUTATIONS:
            real = getattr(os, name)

            def counted(*args, _real=real, **kwargs):
                count[0] += 1
                if count[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return _real(*args, **kwargs)

            setattr(os, name, counted)
    remove_stale_temp_files(folder, [".+"])  # what prepare_run does for the run folder
    with unique_name.guard():
        model = paddle.nn.Linear(2, 3)
    optimizer = create_optimizer({"OPT": "sgd", "LR": 0.1, "WEIGHT_DECAY": 0.0}, model)
    start, skip = 0, 0
    resume = CheckpointSaver.resume_file(folder)
    if resume is not None:
        state = read_paddle_checkpoint(resume)
        start = state["epoch"] + 1
        if "batch_idx" in state:
            start, skip = state["epoch"], state["batch_idx"] + 1
    saver = CheckpointSaver(model, optimizer, checkpoint_dir=folder, recovery_dir=folder,
                            max_history=2)
    for epoch in range(start, EPOCHS):
        for batch in range(skip if epoch == start else 0, BATCHES):
            with paddle.no_grad():  # "training": weights that tell epoch and batch apart
                model.weight.set_value(paddle.full_like(model.weight, 100.0 * epoch + batch))
            if (batch + 1) % RECOVERY_EVERY == 0 and batch != BATCHES - 1:
                saver.save_recovery(epoch, batch)
        update_summary(epoch, {"loss": 10.0 - epoch}, {"prec1": METRICS[epoch]},
                       os.path.join(folder, "summary.csv"))
        saver.save_checkpoint(epoch, METRICS[epoch])


def _in_child(folder, kill_at=None):
    """Run ``_play_run`` in a forked child; returns its wait status."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _play_run(folder, kill_at)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


def _folder_state(folder):
    """Everything a run folder holds, comparable between runs."""
    state = {"files": sorted(os.listdir(folder))}
    for name in state["files"]:
        path = os.path.join(folder, name)
        if name.endswith(".pdparams"):
            ckpt = read_paddle_checkpoint(path, return_numpy=True)
            state[name] = (ckpt["epoch"], ckpt["metric"], ckpt.get("batch_idx"),
                           float(np.unique(ckpt["state_dict"]["weight"]).item()))
        elif name.endswith(".json"):
            with open(path) as f:
                state[name] = json.load(f)
        else:
            with open(path, newline="") as f:
                state[name] = list(csv.reader(f))
    return state


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("uninterrupted"))
    assert _in_child(folder) == 0
    return _folder_state(folder)


def test_the_uninterrupted_run_keeps_the_best_two_epochs(uninterrupted):
    assert uninterrupted["files"] == [
        "checkpoint-1.pdparams", "checkpoint-2.pdparams", "checkpoint_index.json",
        "last.pdparams", "model_best.pdparams", "recovery-2-1.pdparams", "summary.csv"]
    assert uninterrupted["model_best.pdparams"] == (1, 7.0, None, 103.0)
    assert uninterrupted["last.pdparams"] == (2, 6.0, None, 203.0)
    assert uninterrupted["checkpoint_index.json"]["last_epoch"] == 2
    assert [row[0] for row in uninterrupted["summary.csv"]] == ["epoch", "0", "1", "2"]


def test_a_kill_at_any_file_operation_loses_nothing(tmp_path, uninterrupted):
    kill_at, killed = 1, []
    while True:
        folder = str(tmp_path / f"kill_{kill_at}")
        os.makedirs(folder)
        status = _in_child(folder, kill_at)
        if status == 0:  # the run has fewer file operations than kill_at: every one was tried
            break
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
        assert _in_child(folder) == 0, f"the rerun after a kill at operation {kill_at} failed"
        assert _folder_state(folder) == uninterrupted, f"killed at file operation {kill_at}"
        killed.append(kill_at)
        kill_at += 1
    # three epochs of recovery points, summary rows, saves, links and an eviction
    assert len(killed) > 25
