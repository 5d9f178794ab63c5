"""lib.engine.retrain in-process: continuing from a mid-epoch recovery point; the auxiliary loss."""
import csv
import os

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from lib.config import load_config
from lib.darts import PDARTS, NetworkCIFAR
from lib.engine import retrain
from lib.engine.common import finish_run, prepare_run


def _retrain(tmp_path, data_dir, *overrides):
    cfg = load_config(None, [
        "DATA_DIR", data_dir, "SAVE_PATH", str(tmp_path), "MODEL", "rec", "AUTO_RESUME", "True",
        "RESUME_PATH", "", "DATASET.NUM_CLASSES", "4", "DATASET.SELECTION_IMAGE_SIZE", "False",
        "DATASET.IMAGE_SIZE", "32", "DATASET.BATCH_SIZE", "16", "WORKERS", "0", "LOG_INTERVAL", "1",
        "OPT", "rmsproptf", "SCHED", "step", "EPOCHS", "1", "WARMUP_EPOCHS", "0", "LR", "0.01",
        "RECOVERY_INTERVAL", "2", *overrides])
    ctx = prepare_run(cfg, "retrain")
    try:
        return ctx, retrain.run(ctx)
    finally:
        finish_run(ctx)


def test_resume_from_a_recovery_point_trains_only_the_rest_of_the_epoch(tmp_path, demo_data_dir):
    ctx, result = _retrain(tmp_path, demo_data_dir)
    run_dir = ctx.run_dir
    assert result["epochs"] == 1 and result["best_epoch"] == 0
    recovery = os.path.join(run_dir, "recovery-0-1.pdparams")  # after batches 0 and 1 of 3
    state = paddle.load(recovery)
    assert (state["epoch"], state["batch_idx"]) == (0, 1)
    # as if the run had been killed during batch 2: only the recovery file is left
    for name in os.listdir(run_dir):
        if name.endswith(".pdparams") and name != "recovery-0-1.pdparams" or name == "summary.csv":
            os.remove(os.path.join(run_dir, name))
    os.remove(os.path.join(run_dir, "checkpoint_index.json"))
    log_size = os.path.getsize(os.path.join(run_dir, "retrain.log"))

    _retrain(tmp_path, demo_data_dir)
    with open(os.path.join(run_dir, "retrain.log")) as f:
        log = f.read()[log_size:]
    assert f"resumed from {recovery}: epoch 0, batch 2" in log
    assert "Train: 0 [   2/3]" in log and "Train: 0 [   0/3]" not in log
    last = paddle.load(os.path.join(run_dir, "last.pdparams"))
    assert last["epoch"] == 0 and "batch_idx" not in last
    with open(os.path.join(run_dir, "summary.csv"), newline="") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0"]


def test_train_step_adds_the_weighted_loss_of_auxiliary_logits():
    paddle.seed(0)
    model = NetworkCIFAR(4, 10, 3, True, PDARTS)  # training mode: returns (logits, aux_logits)
    images, labels = paddle.randn([4, 3, 32, 32]), paddle.to_tensor([0, 3, 5, 9])
    frozen = paddle.optimizer.SGD(0.0, parameters=model.parameters())  # the step changes nothing
    logits, loss = retrain.train_step(model, images, labels, frozen, F.cross_entropy, aux_weight=0.4)
    again, aux = model(images)
    np.testing.assert_allclose(logits.numpy(), again.numpy(), rtol=1e-5, atol=1e-6)
    expected = F.cross_entropy(again, labels) + 0.4 * F.cross_entropy(aux, labels)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    _, plain = retrain.train_step(model, images, labels, frozen, F.cross_entropy)  # weight 0: main loss only
    assert float(plain) == pytest.approx(float(F.cross_entropy(again, labels)), rel=1e-5)
