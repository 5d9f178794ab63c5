"""Every kind of .pdparams the engines write reads back through the allow-list reader exactly as
paddle.load reads it: retrain (weights, EMA, optimizer, scheduler, recovery point) and search
(board with its images and features, path sampler, recovery point). Resuming from them goes
through the same reader (test_retrain, test_search, test_main_retrain check bit-identity)."""
import csv
import os
import shutil

import numpy as np
import pytest

from lib.config import load_config
from lib.engine import retrain
from lib.engine import search as search_engine
from lib.engine.common import finish_run, prepare_run
from pimm.models import read_paddle_checkpoint
from tests.pimm.models.paddle_files import assert_same_as_paddle_load

DEMO = os.path.join(os.path.dirname(__file__), "..", "..", "..", "experiments", "configs", "train",
                    "demo.yaml")
COMMON = ["DATASET.NUM_CLASSES", "4", "DATASET.IMAGE_SIZE", "32", "WORKERS", "0",
          "LOG_INTERVAL", "1", "EPOCHS", "1"]


def _run(cfg, mode, engine):
    ctx = prepare_run(cfg, mode)
    try:
        engine.run(ctx)
    finally:
        finish_run(ctx)
    return ctx.run_dir


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory, demo_data_dir):
    save = str(tmp_path_factory.mktemp("runs"))
    retrain_cfg = load_config(None, [
        "DATA_DIR", demo_data_dir, "SAVE_PATH", save, "MODEL", "rec", "RESUME_PATH", "",
        "DATASET.SELECTION_IMAGE_SIZE", "False", "DATASET.BATCH_SIZE", "16", "OPT", "rmsproptf",
        "SCHED", "step", "WARMUP_EPOCHS", "0", "LR", "0.01", "RECOVERY_INTERVAL", "2",
        "NET.EMA.USE", "True", *COMMON])
    search_cfg = load_config(DEMO, [
        "DATA_DIR", demo_data_dir, "SAVE_PATH", save, "MODEL", "search",
        "DATASET.BATCH_SIZE", "4", "DATASET.VAL_BATCH_MUL", "4", "SUPERNET.SLICE", "2",
        "SUPERNET.POOL_SIZE", "3", "SUPERNET.UPDATE_ITER", "2", "SUPERNET.META_STA_EPOCH", "-1",
        "SUPERNET.VAL_PATHS", "2", "SUPERNET.HOW_TO_PROB", "teacher",
        "SUPERNET.FLOPS_MAXIMUM", "115", "SUPERNET.VAL_BN_BATCHES", "4", "LR", "0.02", "RECOVERY_INTERVAL", "3",
        *COMMON])
    return {"retrain": _run(retrain_cfg, "retrain", retrain),
            "search": _run(search_cfg, "train", search_engine)}


def _pdparams(folder):
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.endswith(".pdparams"))


@pytest.mark.parametrize("mode", ["retrain", "search"])
def test_every_written_file_reads_as_paddle_load_reads_it(run_dirs, mode):
    files = _pdparams(run_dirs[mode])
    names = {os.path.basename(path).split("-")[0] for path in files}
    assert {"last.pdparams", "model_best.pdparams", "checkpoint", "recovery"} <= names, files
    for path in files:
        assert_same_as_paddle_load(path)


def test_the_files_hold_every_kind_of_state(run_dirs):
    retrained = read_paddle_checkpoint(os.path.join(run_dirs["retrain"], "last.pdparams"))
    assert {"state_dict", "state_dict_ema", "optimizer", "scheduler", "args"} <= set(retrained)
    recovery = [p for p in _pdparams(run_dirs["search"]) if "recovery-" in p]
    searched = read_paddle_checkpoint(recovery[0])
    sampler = searched["path_sampler"]["bit_generator"]
    assert searched["batch_idx"] >= 0 and sampler["bit_generator"] == "PCG64"
    entry = searched["board"]["entries"][0]
    assert entry["images"].dtype == np.float32 and entry["images"].shape[1:] == (3, 32, 32)
    assert entry["features"].shape[0] == entry["images"].shape[0]


def _summary(run_dir):
    with open(os.path.join(run_dir, "summary.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_a_search_resumed_within_the_last_batches_validates_as_the_uninterrupted_one(
        run_dirs, tmp_path, demo_data_dir):
    """The last recovery point (after batch 8 of 12) lies within the VAL_BN_BATCHES (4) batches
    whose images recalibrate batch norm for validation: the resumed run must still use all four."""
    full = run_dirs["search"]
    cfg = load_config(os.path.join(full, "config.yaml"), ["SAVE_PATH", str(tmp_path)])
    assert cfg.SUPERNET.VAL_BN_BATCHES == 4
    resumed = os.path.join(str(tmp_path), "search")
    os.makedirs(resumed)
    shutil.copy(os.path.join(full, "recovery-0-8.pdparams"), resumed)  # killed during batch 9
    assert _run(cfg, "train", search_engine) == resumed
    with open(os.path.join(resumed, "train.log")) as f:
        assert "epoch 0, batch 9" in f.read()
    (expected,), (got,) = _summary(full), _summary(resumed)
    evaluated = {k: v for k, v in expected.items() if k.startswith("eval_")}
    assert evaluated and {k: got[k] for k in evaluated} == evaluated
    a = read_paddle_checkpoint(os.path.join(full, "last.pdparams"))["state_dict"]
    b = read_paddle_checkpoint(os.path.join(resumed, "last.pdparams"))["state_dict"]
    for key in a:
        np.testing.assert_array_equal(b[key].numpy(), a[key].numpy(), err_msg=key)
