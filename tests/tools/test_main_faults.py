"""tools/main.py when things go wrong around a run: a full disk, a folder another run holds, a
config the folder's checkpoint refuses, a damaged last.pdparams, unreadable images, a diverged
loss. Each ends in one ``error:`` line (exit 2) or a run that carries on, and the run folder keeps
everything it had."""
import csv
import errno
import os
import re
import shutil

import numpy as np
import paddle
import pytest

from pimm.models import read_paddle_checkpoint
from pimm.utils import CheckpointSaver, RunLock, file_io

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RETRAIN_14 = os.path.join(REPO, "experiments", "configs", "retrain", "14.yaml")
DEMO = os.path.join(REPO, "experiments", "configs", "train", "demo.yaml")
# net 14 at 32 px on the 48 demo images: 3 steps per epoch, a recovery point after step 2
TINY = ["DATASET.NUM_CLASSES", 4, "DATASET.IMAGE_SIZE", 32, "DATASET.SELECTION_IMAGE_SIZE", False,
        "WORKERS", 0, "NUM_GPU", 1, "DATASET.BATCH_SIZE", 16, "LOG_INTERVAL", 1, "EPOCHS", 2,
        "WARMUP_EPOCHS", 0, "LR", 0.01, "RECOVERY_INTERVAL", 2, "MODEL", "run"]


@pytest.fixture
def main(load_tool, capsys):
    """tools/main.py's main(argv) in-process; returns (exit code, stderr)."""
    tool = load_tool("main")

    def run(*argv):
        code = tool.main([str(a) for a in argv])
        return code, capsys.readouterr().err

    return run


def _error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _retrain(main, data, save, *overrides):
    return main("retrain", RETRAIN_14, *TINY, "DATA_DIR", data, "SAVE_PATH", save, *overrides)


def _summary_epochs(run_dir):
    with open(os.path.join(run_dir, "summary.csv"), newline="") as f:
        return [row["epoch"] for row in csv.DictReader(f)]


def _finite(path):
    weights = read_paddle_checkpoint(path, return_numpy=True)["state_dict"]
    return all(np.isfinite(v).all() for v in weights.values())


def test_disk_full_then_a_rejected_config_then_the_same_command(main, tmp_path, demo_data_dir,
                                                                 monkeypatch):
    run_dir = str(tmp_path / "run")
    real_save = paddle.save

    def fill_the_disk(obj, path, *args, **kwargs):  # what a full disk does to epoch 1's last
        if os.path.basename(path).startswith(".last.pdparams") and obj.get("epoch") == 1:
            with open(path, "wb") as f:
                f.write(b"\x80\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(file_io.paddle, "save", fill_the_disk)
    code, err = _retrain(main, demo_data_dir, tmp_path)
    monkeypatch.undo()
    assert code == 2
    assert _error_line(err) == (
        f"error: No space left on device in {run_dir} (writing last.pdparams): free space "
        "there, or write elsewhere (SAVE_PATH), and run the same command again; the files "
        "written before are intact")
    assert not [n for n in os.listdir(run_dir) if n.endswith(".tmp")]
    assert read_paddle_checkpoint(os.path.join(run_dir, "last.pdparams"))["epoch"] == 0
    assert os.path.exists(os.path.join(run_dir, "checkpoint-0.pdparams"))
    assert _summary_epochs(run_dir) == ["0", "1"]  # epoch 1's row came before its checkpoint

    # another network against this folder: refused, and config.yaml still records the run
    with open(os.path.join(run_dir, "config.yaml")) as f:
        record = f.read()
    code, err = _retrain(main, demo_data_dir, tmp_path, "NET.SELECTION", 43)
    assert code == 2 and "holds another network" in _error_line(err)
    with open(os.path.join(run_dir, "config.yaml")) as f:
        assert f.read() == record

    # the same command again: epoch 1 resumes from its recovery point, its row is not doubled
    code, err = _retrain(main, demo_data_dir, tmp_path)
    assert code == 0, err
    with open(os.path.join(run_dir, "retrain.log")) as f:
        assert "recovery-1-1.pdparams: epoch 1, batch 2" in f.read()
    assert _summary_epochs(run_dir) == ["0", "1"]
    assert read_paddle_checkpoint(os.path.join(run_dir, "last.pdparams"))["epoch"] == 1
    assert {"checkpoint-0.pdparams", "checkpoint-1.pdparams", "model_best.pdparams"} <= set(
        os.listdir(run_dir))


def test_a_run_folder_in_use_stops_a_second_run_at_once(main, tmp_path, demo_data_dir):
    os.makedirs(tmp_path / "run")
    with RunLock(str(tmp_path / "run")).acquire("retrain, 1 process(es)"):
        code, err = _retrain(main, demo_data_dir, tmp_path)
    line = _error_line(err)
    assert code == 2 and line.startswith(f"error: {tmp_path / 'run'} is in use by another run "
                                         f"(pid {os.getpid()} on host ")
    assert line.endswith(", retrain, 1 process(es)): wait for it to end or stop it, or give this "
                         "run another MODEL or SAVE_PATH")
    assert os.listdir(tmp_path / "run") == ["run.lock"]  # nothing else written


def test_a_damaged_last_checkpoint_falls_back_to_the_newest_intact_one(main, tmp_path,
                                                                        demo_data_dir):
    assert _retrain(main, demo_data_dir, tmp_path)[0] == 0
    run_dir = tmp_path / "run"
    last = run_dir / "last.pdparams"
    intact = last.read_bytes()
    last.unlink()  # a hard link of checkpoint-1: damage a copy of its own
    last.write_bytes(intact[:len(intact) // 2])
    code, err = _retrain(main, demo_data_dir, tmp_path, "EPOCHS", 3)
    assert code == 0, err
    with open(run_dir / "retrain.log") as f:
        log = f.read()
    assert f"cannot resume from {last} (" in log
    assert f"resuming from {run_dir / 'checkpoint-1.pdparams'} instead" in log
    assert f"resumed from {run_dir / 'checkpoint-1.pdparams'}: epoch 2" in log
    assert _summary_epochs(run_dir) == ["0", "1", "2"]


@pytest.fixture(scope="module")
def damaged_data(demo_data_dir, tmp_path_factory):
    """The demo tree with a truncated JPEG and a text file named .JPEG among the training images."""
    root = tmp_path_factory.mktemp("damaged")
    shutil.copytree(demo_data_dir, root, dirs_exist_ok=True)
    circles = root / "train" / "00_circle"
    good = sorted(circles.iterdir())[0].read_bytes()
    (circles / "zz_truncated.JPEG").write_bytes(good[:len(good) // 3])
    (root / "train" / "02_triangle" / "zz_notes.JPEG").write_text("a README saved as .JPEG\n")
    return str(root)


def test_unreadable_images_are_skipped_and_counted(main, tmp_path, damaged_data):
    code, err = _retrain(main, damaged_data, tmp_path, "EPOCHS", 1, "DATASET.MAX_BAD_IMAGE_FRACTION",
                         0.2)
    assert code == 0, err
    run_dir = tmp_path / "run"
    with open(run_dir / "retrain.log") as f:
        log = f.read()
    for name in ("zz_truncated.JPEG", "zz_notes.JPEG"):
        assert log.count(f"skipping an unreadable image (left out of its batch, counted as "
                         f"skipped): cannot decode image {os.path.join(damaged_data, 'train')}") >= 1
        assert sum(name in line for line in log.splitlines() if "skipping" in line) == 1
    assert "epoch 0: 2 unreadable image(s) skipped" in log
    with open(run_dir / "summary.csv", newline="") as f:
        assert [row["train_skipped_images"] for row in csv.DictReader(f)] == ["2"]
    # over the limit: one error line naming the setting
    code, err = _retrain(main, damaged_data, tmp_path, "MODEL", "strict",
                         "DATASET.MAX_BAD_IMAGE_FRACTION", 0.01)
    assert code == 2
    assert "could not be read" in _error_line(err)
    assert "more than DATASET.MAX_BAD_IMAGE_FRACTION = 0.01 allows" in err


@pytest.mark.parametrize("mode, recovery_interval", [("retrain", 0), ("retrain", 1), ("train", 0)])
def test_a_diverging_run_stops_before_saving_non_finite_weights(main, tmp_path, demo_data_dir,
                                                                 mode, recovery_interval):
    """Found by the loss (epoch, step, loss, LR), or by the saver when a recovery point comes
    after the update that broke the weights and before a loss shows it."""
    if mode == "retrain":
        code, err = _retrain(main, demo_data_dir, tmp_path, "LR", 1e6, "RECOVERY_INTERVAL",
                             recovery_interval)
    else:
        code, err = main("train", DEMO, "DATA_DIR", demo_data_dir, "SAVE_PATH", tmp_path,
                         "MODEL", "run", "DATASET.NUM_CLASSES", 4, "DATASET.IMAGE_SIZE", 32,
                         "DATASET.BATCH_SIZE", 8, "WORKERS", 0, "EPOCHS", 1, "LOG_INTERVAL", 2,
                         "SUPERNET.FLOPS_MAXIMUM", 115, "SUPERNET.SLICE", 2,
                         "SUPERNET.META_STA_EPOCH", -1, "LR", 1e6)
    line = _error_line(err)
    assert code == 2 and line.startswith("error: training diverged: ")
    if recovery_interval:
        assert "the weights of epoch 0, batch 1 are not finite" in line
    else:
        assert line.startswith("error: training diverged: loss ") and " at epoch 0, step " in line
        # the search's rate decays linearly from LR over the run's steps
        assert re.search(r"\(LR (1\.000e\+06|[0-9.]+e\+05)\)", line), line
    run_dir = str(tmp_path / "run")
    saved = [n for n in os.listdir(run_dir) if n.endswith(".pdparams")]
    assert "last.pdparams" not in saved and "board.json" not in os.listdir(run_dir)
    assert all(_finite(os.path.join(run_dir, name)) for name in saved)
    resume = CheckpointSaver.resume_file(run_dir)
    assert resume is None or _finite(resume)
