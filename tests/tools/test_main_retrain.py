"""tools/main.py retrain and test, run as a user runs them: files of a run, learning, resume."""
import csv
import json
import os
import shutil

import numpy as np
import paddle
import pytest

from lib.config import load_config
from lib.engine.child import create_child_model, resolve_child
from pimm.models import load_checkpoint

pytestmark = pytest.mark.e2e  # runs tools/main.py in subprocesses

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RETRAIN_14 = os.path.join(REPO, "experiments", "configs", "retrain", "14.yaml")
TEST_CFG = os.path.join(REPO, "experiments", "configs", "test", "test.yaml")
# The published 14 MFLOPs recipe (RMSpropTF, step LR, label smoothing, dropout, EMA, RandAugment,
# random erasing) at 32 px on 96 images: 6 steps per epoch, a few seconds per epoch on 2 cores.
# NUM_CLASSES 100 keeps the classifier's initialisation (uniform +-1/sqrt(classes)) near ImageNet
# scale; with 4 outputs the logits start in the tens and short runs spend their steps undoing it.
TINY = ["DATASET.SELECTION_IMAGE_SIZE", "False", "DATASET.IMAGE_SIZE", "32", "WORKERS", "0",
        "NUM_GPU", "1", "DATASET.BATCH_SIZE", "16", "LOG_INTERVAL", "2", "WARMUP_EPOCHS", "0",
        "LR", "0.01", "DATASET.NUM_CLASSES", "100", "NET.EMA.DECAY", "0.5",
        "RECOVERY_INTERVAL", "4"]
EPOCHS = 4


def _summary(run_dir):
    with open(os.path.join(run_dir, "summary.csv"), newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, colour_data_dir, run_main):
    """An uninterrupted retrain of EPOCHS epochs; returns its run folder."""
    root = tmp_path_factory.mktemp("retrain")
    run_main("retrain", RETRAIN_14, *TINY, "DATA_DIR", colour_data_dir, "SAVE_PATH", root,
             "MODEL", "full", "EPOCHS", EPOCHS, cwd=root)
    return str(root / "full")


def test_retrain_writes_config_log_events_summary_and_checkpoints(full_run):
    names = set(os.listdir(full_run))
    assert {"config.yaml", "retrain.log", "summary.csv", "last.pdparams", "model_best.pdparams",
            "checkpoint_index.json"} <= names
    assert {f"checkpoint-{e}.pdparams" for e in range(EPOCHS)} <= names
    assert "recovery-3-3.pdparams" in names  # RECOVERY_INTERVAL 4: batch 3 of the last epoch
    events = os.listdir(os.path.join(full_run, "runs"))
    assert any(n.startswith("events.out.tfevents") for n in events)
    cfg = load_config(os.path.join(full_run, "config.yaml"))
    assert cfg.MODEL == "full" and cfg.EPOCHS == EPOCHS and cfg.OPT == "rmsproptf"

    last = paddle.load(os.path.join(full_run, "last.pdparams"))
    assert last["epoch"] == EPOCHS - 1 and last["version"] == 2
    assert {"state_dict", "state_dict_ema", "optimizer", "scheduler", "args"} <= set(last)
    assert last["args"]["NET"]["SELECTION"] == 14
    # the step schedule: LR 0.01 decayed by 0.973 every 2.4 epochs, set for the next epoch
    assert last["scheduler"]["last_lr"] == pytest.approx(0.01 * 0.973 ** (EPOCHS // 2.4))

    rows = _summary(full_run)
    assert [int(r["epoch"]) for r in rows] == list(range(EPOCHS))
    assert {"train_loss", "train_prec1", "train_lr", "eval_loss", "eval_prec1", "eval_prec5",
            "eval_ema_prec1"} <= set(rows[0])
    with open(os.path.join(full_run, "retrain.log")) as f:
        log = f.read()
    assert "[Model-14]" in log and "Train: 3 [   5/6]" in log and "Test_EMA" in log


def test_short_retrain_learns_above_chance(full_run):
    rows = _summary(full_run)
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < 0.6 * losses[0]
    # 64 images of 4 balanced classes: chance is 25 % (a guesser exceeds 45 % with p < 1e-3)
    assert float(rows[0]["eval_prec1"]) <= 30.0
    assert float(rows[-1]["eval_prec1"]) >= 45.0
    assert max(float(r["eval_ema_prec1"]) for r in rows) >= 45.0


def test_resumed_run_ends_in_the_state_of_the_uninterrupted_one(full_run, tmp_path, colour_data_dir,
                                                               run_main):
    # A run killed during epoch 2 leaves what the full run had after epoch 1: its last.pdparams
    # then (kept as checkpoint-1), config and the first two summary rows.
    run_dir = tmp_path / "resumed"
    run_dir.mkdir()
    shutil.copy(os.path.join(full_run, "checkpoint-1.pdparams"), run_dir / "last.pdparams")
    shutil.copy(os.path.join(full_run, "config.yaml"), run_dir / "config.yaml")
    with open(os.path.join(full_run, "summary.csv")) as f:
        (run_dir / "summary.csv").write_text("".join(f.readlines()[:3]))
    run_main("retrain", RETRAIN_14, *TINY, "DATA_DIR", colour_data_dir, "SAVE_PATH", tmp_path,
             "MODEL", "resumed", "AUTO_RESUME", "True", "EPOCHS", EPOCHS, cwd=tmp_path)
    with open(run_dir / "retrain.log") as f:
        assert f"resumed from {run_dir / 'last.pdparams'}: epoch 2" in f.read()

    resumed = paddle.load(str(run_dir / "last.pdparams"))
    full = paddle.load(os.path.join(full_run, "last.pdparams"))
    assert resumed["epoch"] == full["epoch"] == EPOCHS - 1
    assert resumed["scheduler"] == full["scheduler"]
    for key in ("state_dict", "state_dict_ema", "optimizer"):
        assert resumed[key].keys() == full[key].keys()
        for name, value in full[key].items():
            if isinstance(value, paddle.Tensor):
                np.testing.assert_array_equal(resumed[key][name].numpy(), value.numpy(),
                                              err_msg=name)
    # the summary continues where it stopped, with the numbers of the uninterrupted run
    assert _summary(run_dir) == _summary(full_run)


def test_test_mode_reports_the_checkpoint_accuracy(full_run, tmp_path, colour_data_dir, run_main,
                                                  evaluate_image_by_image):
    best = os.path.join(full_run, "model_best.pdparams")
    run_main("test", TEST_CFG, *TINY, "DATA_DIR", colour_data_dir, "SAVE_PATH", tmp_path,
             "MODEL", "t", "RESUME_PATH", best, cwd=tmp_path)
    with open(tmp_path / "t" / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["images"] == 64 and metrics["weights"] == "state_dict_ema"
    assert metrics["selection"] == 14 and metrics["image_size"] == 32
    assert metrics["checkpoint"] == os.path.abspath(best) and metrics["seconds"] > 0
    # the saver ranked this checkpoint by the same EMA Prec@1 on the same images
    assert metrics["top1"] == pytest.approx(paddle.load(best)["metric"])
    cfg = load_config(TEST_CFG, TINY)
    model = create_child_model(cfg, resolve_child(cfg))
    load_checkpoint(model, best, use_ema=True)
    expected = evaluate_image_by_image(model, os.path.join(colour_data_dir, "val"), 32)
    assert metrics["top1"] == pytest.approx(expected["top1"])
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-4)
    assert os.path.isfile(tmp_path / "t" / "test.log")
