"""tools/main.py test on released-format PyTorch checkpoints (Cream 14, PeleeNet); retrain in two
processes."""
import csv
import json
import os
import shutil

import numpy as np
import paddle
import pytest

from lib.models import build_childnet
from pimm.data import ImageDataset, create_transform
from pimm.models import create_model, load_checkpoint
from tests.pimm.models.paddle_to_torch import torch_state_dict
from tests.pimm.models.test_models_peleenet import set_golden_weights
from tests.pimm.models.torchfile_writer import REBUILD_TENSOR, save_legacy

pytestmark = pytest.mark.e2e  # runs tools/main.py in subprocesses

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RETRAIN_14 = os.path.join(REPO, "experiments", "configs", "retrain", "14.yaml")
TEST_CFG = os.path.join(REPO, "experiments", "configs", "test", "test.yaml")
TEST_PELEENET = os.path.join(REPO, "experiments", "configs", "test", "peleenet.yaml")
SMALL = ["WORKERS", "0", "NUM_GPU", "1", "DATASET.BATCH_SIZE", "2", "LOG_INTERVAL", "1"]


def _predicted_val_folder(model, pool_dir, out_dir, size=64, interpolation="bicubic"):
    """A 1000-class-style val folder on which ``model`` (random weights) scores strictly between
    0 and 100 %: class folders 0..c where c is the smallest class the model predicts for a pool
    image; all pool images go to folder c (hits for those predicted c), one to each other folder."""
    pool = ImageDataset(pool_dir, transform=create_transform(size, interpolation=interpolation,
                                                             crop_pct=0.875))
    model.eval()
    with paddle.no_grad():
        predicted = [int(model(paddle.to_tensor(pool[i][0][None])).argmax(axis=1)[0])
                     for i in range(len(pool))]
    target = min(predicted)
    assert target < 200 and 0 < predicted.count(target) < len(pool)
    for label in range(target + 1):
        os.makedirs(out_dir / f"{label:04d}")
    for index, (path, _) in enumerate(pool.samples):
        shutil.copy(path, out_dir / f"{target:04d}" / f"pool{index}.jpg")
    for label in range(target):
        source = pool.samples[label % len(pool)][0]
        shutil.copy(source, out_dir / f"{label:04d}" / "filler.jpg")
    return len(pool) + target


def _favoured_classes_first(model, pool_dir, size):
    """Swap the two classes of highest mean logit on the pool's images into labels 0 and 1, so
    that a small val tree (_predicted_val_folder) holds what the model predicts."""
    pool = ImageDataset(pool_dir, transform=create_transform(size, interpolation="bilinear"))
    model.eval()
    with paddle.no_grad():
        mean_logits = sum(model(paddle.to_tensor(pool[i][0][None])).numpy()[0]
                          for i in range(len(pool)))
    order = np.arange(len(mean_logits))
    favoured = list(np.argsort(-mean_logits)[:2])
    order[[0, 1] + favoured] = favoured + [0, 1]
    with paddle.no_grad():
        model.classifier.weight.set_value(model.classifier.weight.numpy()[:, order])
        model.classifier.bias.set_value(model.classifier.bias.numpy()[order])


def test_released_checkpoint_matches_image_by_image_evaluation(cream14_dir, tmp_path,
                                                               demo_data_factory, run_main,
                                                               evaluate_image_by_image):
    checkpoint = os.path.join(cream14_dir, "14.pth.tar")
    model = build_childnet(14, num_classes=1000)
    load_checkpoint(model, checkpoint, use_ema=True)
    pool = demo_data_factory(num_classes=4, train_per_class=1, val_per_class=6, image_size=72)
    val_dir = tmp_path / "data" / "val"
    images = _predicted_val_folder(model, os.path.join(pool, "val"), val_dir)

    run_main("test", TEST_CFG, *SMALL, "DATA_DIR", tmp_path / "data", "SAVE_PATH",
             tmp_path / "runs", "RESUME_PATH", checkpoint, "NET.SELECTION", 14,
             "DATASET.NUM_CLASSES", 1000, cwd=tmp_path)
    with open(tmp_path / "runs" / "Childnet_Testing" / "metrics.json") as f:
        metrics = json.load(f)
    expected = evaluate_image_by_image(model, str(val_dir), 64)
    assert 0 < expected["top1"] < 100
    assert metrics["images"] == images
    assert metrics["top1"] == pytest.approx(expected["top1"])
    assert metrics["top5"] == pytest.approx(expected["top5"])
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-4)
    assert metrics["weights"] == "state_dict_ema" and metrics["image_size"] == 64
    published = (metrics["selection"], metrics["published_top1"], metrics["published_top5"])
    assert published == (14, 53.8, 77.2)


def test_peleenet_released_format_through_its_test_config(tmp_path, demo_data_factory, run_main,
                                                         evaluate_image_by_image):
    """The README's command on a generated ImageNet-style val tree and a checkpoint in the
    layout of the authors' peleenet_acc7208.pth.tar (torch 0.3 legacy format, CUDA storages,
    'module.' names, no num_batches_tracked), evaluated as their eval.py does (256, bilinear,
    centre 224)."""
    model = create_model("peleenet", num_classes=1000)
    set_golden_weights(model)  # batch-norm statistics far from 0/1: decisive logits
    pool = demo_data_factory(num_classes=4, train_per_class=1, val_per_class=3, image_size=72)
    _favoured_classes_first(model, os.path.join(pool, "val"), 224)
    checkpoint = tmp_path / "peleenet_acc7208.pth.tar"
    save_legacy({"epoch": 120, "arch": "peleenet", "best_acc1": 72.08, "optimizer": {},
                 "state_dict": torch_state_dict(model, "module.", batches_tracked=None,
                                                location="cuda:0", rebuild=REBUILD_TENSOR)},
                str(checkpoint))
    val_dir = tmp_path / "imagenet" / "val"
    images = _predicted_val_folder(model, os.path.join(pool, "val"), val_dir, size=224,
                                   interpolation="bilinear")

    run_main("test", TEST_PELEENET, "RESUME_PATH", checkpoint.name, "DATA_DIR", "imagenet",
             "SAVE_PATH", "runs", "WORKERS", 0, cwd=tmp_path)
    with open(tmp_path / "runs" / "PeleeNet_Testing" / "metrics.json") as f:
        metrics = json.load(f)
    expected = evaluate_image_by_image(model, str(val_dir), 224, interpolation="bilinear")
    assert 0 < expected["top1"] < 100 and metrics["images"] == images
    assert (metrics["top1"], metrics["top5"]) == (pytest.approx(expected["top1"]),
                                                  pytest.approx(expected["top5"]))
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-4)
    assert (metrics["model"], metrics["weights"], metrics["image_size"]) == ("peleenet", "state_dict", 224)


def test_two_processes_retrain_on_demo_data(tmp_path, demo_data_factory, run_main,
                                            evaluate_image_by_image):
    data = demo_data_factory(num_classes=3, train_per_class=4, val_per_class=3, image_size=32)
    run_main("retrain", RETRAIN_14, *SMALL, "DATA_DIR", data, "SAVE_PATH", tmp_path, "MODEL", "two",
             "DATASET.NUM_CLASSES", 3, "DATASET.SELECTION_IMAGE_SIZE", "False",
             "DATASET.IMAGE_SIZE", 32, "EPOCHS", 1, "WARMUP_EPOCHS", 0, "--nproc", 2, cwd=tmp_path)
    run_dir = tmp_path / "two"
    with open(run_dir / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["0"]  # written once, by rank 0
    with open(run_dir / "retrain.log") as f:
        log = f.read()
    assert "2 process(es)" in log and "Train: 0 [   2/3]" in log  # 12 images, 2 ranks, batch 2
    assert log.count("*** epoch 0") == 1
    assert os.path.isfile(tmp_path / "launch_logs" / "two" / "workerlog.1")

    # the epoch's evaluation, sharded over both processes (9 images: one padded duplicate), equals
    # evaluating the saved weights image by image
    model = build_childnet(14, num_classes=3)
    load_checkpoint(model, str(run_dir / "last.pdparams"))
    expected = evaluate_image_by_image(model, os.path.join(data, "val"), 32)
    assert float(rows[0]["eval_prec1"]) == pytest.approx(expected["top1"])
    assert float(rows[0]["eval_loss"]) == pytest.approx(expected["loss"], rel=1e-4)
