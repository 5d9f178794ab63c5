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
def test_named_model_from_initial_weights_with_a_per_update_cosine(tmp_path, demo_data_dir):
    """NET.MODEL peleenet starts from INITIAL_CHECKPOINT's weights (not a resume: epoch 0, a
    fresh optimizer) and its LR follows the cosine after every update: 3 updates per epoch of
    2, so the first epoch ends half-way down (the per-epoch cosine would still be at LR)."""
    import numpy as np
    import pytest

    from lib.engine.common import RunError
    from pimm.models import create_model, load_checkpoint

    start = create_model("peleenet", num_classes=4)
    with paddle.no_grad():
        start.classifier.bias.set_value(paddle.to_tensor([20.0, 0.0, 0.0, 0.0]))
    initial = str(tmp_path / "start.pdparams")
    paddle.save({"state_dict": start.state_dict(), "epoch": 119}, initial)
    peleenet = ["NET.MODEL", "peleenet", "NET.DROPOUT_RATE", "0.05", "NET.EMA.USE", "False",
                "OPT", "momentum", "FILTER_BIAS_AND_BN", "False", "SCHED", "cosine",
                "SCHED_ON_UPDATES", "True", "EPOCHS", "2", "MIN_LR", "0.0", "COOLDOWN_EPOCHS", "0",
                "LR", "0.02", "AUGMENTATION.AA", "", "RECOVERY_INTERVAL", "0",
                "INITIAL_CHECKPOINT", initial]
    ctx, result = _retrain(tmp_path, demo_data_dir, *peleenet)
    assert result["epochs"] == 2
    with open(os.path.join(ctx.run_dir, "summary.csv"), newline="") as f:
        lrs = [float(row["train_lr"]) for row in csv.DictReader(f)]
    np.testing.assert_allclose(lrs, [0.01, 0.0], atol=1e-12)
    with open(os.path.join(ctx.run_dir, "retrain.log")) as f:
        assert f"starting from the weights of {initial}" in f.read()
    trained = create_model("peleenet", num_classes=4)
    load_checkpoint(trained, os.path.join(ctx.run_dir, "last.pdparams"))
    bias = trained.classifier.bias.numpy()
    assert bias[0] > 15 and not np.allclose(bias, [20, 0, 0, 0])  # started there, then trained

    wrong = str(tmp_path / "wrong.pdparams")
    paddle.save({"state_dict": create_model("peleenet", num_classes=3).state_dict()}, wrong)
    with pytest.raises(RunError, match=r"INITIAL_CHECKPOINT .*wrong.pdparams does not fit model "
                                       "peleenet: shape mismatch classifier.weight"):
        _retrain(tmp_path, demo_data_dir, *peleenet, "MODEL", "other", "INITIAL_CHECKPOINT", wrong)
