"""Every shipped config loads as it is, and the retrain/test ones describe the published nets."""
import glob
import json
import os

import pytest

from lib.config import load_config
from lib.engine.child import resolve_child
from lib.models import CREAM_ARCHS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(REPO, "experiments", "configs")


def test_every_shipped_config_loads():
    paths = sorted(glob.glob(os.path.join(CONFIGS, "**", "*.yaml"), recursive=True))
    assert len(paths) >= 8
    for path in paths:
        load_config(path)


@pytest.mark.parametrize("selection", sorted(CREAM_ARCHS))
def test_retrain_config_of_each_selection_has_the_published_recipe(selection):
    cfg = load_config(os.path.join(CONFIGS, "retrain", f"{selection}.yaml"))
    spec = resolve_child(cfg)
    entry = CREAM_ARCHS[selection]
    assert (spec.selection, spec.arch) == (selection, entry.arch_list())
    assert spec.image_size == entry.image_size
    assert cfg.DATASET.IMAGE_SIZE == entry.image_size
    assert (cfg.OPT, cfg.LR, cfg.OPT_EPS, cfg.WEIGHT_DECAY, cfg.EPOCHS) == (
        "rmsproptf", 0.064, 1e-3, 1e-5, 500)
    assert (cfg.WARMUP_LR, cfg.WARMUP_EPOCHS, cfg.DECAY_EPOCHS, cfg.DECAY_RATE) == (
        1e-6, 3, 2.4, 0.973)
    assert cfg.SCHED == ("step" if selection in (14, 43) else "cosine")
    assert (cfg.NET.DROPOUT_RATE, cfg.NET.EMA.USE, cfg.NET.EMA.DECAY) == (0.2, True, 0.9999)
    assert (cfg.AUGMENTATION.AA, cfg.AUGMENTATION.RE_PROB, cfg.AUGMENTATION.RE_MODE) == (
        "rand-m9-mstd0.5", 0.2, "pixel")
    assert (cfg.AUGMENTATION.SMOOTHING, cfg.AUGMENTATION.COLOR_JITTER) == (0.1, 0.4)
    assert (cfg.NUM_GPU, cfg.DATASET.BATCH_SIZE, cfg.DATASET.NUM_CLASSES) == (8, 128, 1000)
    assert cfg.MODEL == f"{selection}m_retrain"


def test_searched_config_retrains_the_best_path_of_a_board(tmp_path):
    board = tmp_path / "board.json"
    arch = [[0], [3], [3, 1], [3, 1], [3, 3, 3], [3, 3], [0]]
    board.write_text(json.dumps({"paths": [{"arch": arch, "flops": 42.4, "params": 4.4,
                                            "prec1": 60.0}],
                                 "flops_minimum": 0, "flops_maximum": 100}))
    path = os.path.join(CONFIGS, "retrain", "searched.yaml")
    spec = resolve_child(load_config(path, ["NET.BOARD_JSON", str(board)]))
    assert (spec.selection, spec.arch, spec.image_size) == (-1, arch, 224)
    spec = resolve_child(load_config(path, ["NET.BOARD_JSON", "", "NET.INPUT_ARCH", str(arch)]))
    assert spec.arch == arch and spec.source == "NET.INPUT_ARCH"


def test_test_config_evaluates_ema_weights_of_selection_14():
    cfg = load_config(os.path.join(CONFIGS, "test", "test.yaml"))
    assert resolve_child(cfg).image_size == 64 and cfg.NET.EMA.USE and not cfg.AUTO_RESUME


def _flat(cfg, prefix=""):
    items = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            items.update(_flat(value, f"{prefix}{key}."))
        else:
            items[prefix + key] = value
    return items


def test_peleenet_configs_have_the_reference_recipe():
    """Robert-JunWang/PeleeNet's main.py: SGD (plain momentum 0.9, weight decay 1e-4 on every
    parameter), LR 0.18 for 512 images, cosine per step to 0 over 120 epochs, random-resized
    crop + flip (bilinear), plain cross-entropy; evaluation at 256 -> 224, bilinear."""
    from lib.engine.child import child_loader_policy

    cfg = load_config(os.path.join(CONFIGS, "retrain", "peleenet.yaml"))
    spec = resolve_child(cfg)
    assert (spec.model, spec.image_size, cfg.NET.DROPOUT_RATE, cfg.NET.GP) == ("peleenet", 224, 0.05, "avg")
    assert (cfg.OPT, cfg.MOMENTUM, cfg.WEIGHT_DECAY, cfg.FILTER_BIAS_AND_BN) == ("momentum", 0.9, 1e-4, False)
    assert cfg.LR * 512 / (cfg.NUM_GPU * cfg.DATASET.BATCH_SIZE) == 0.18
    assert (cfg.SCHED, cfg.SCHED_ON_UPDATES, cfg.EPOCHS, cfg.WARMUP_EPOCHS, cfg.MIN_LR,
            cfg.COOLDOWN_EPOCHS) == ("cosine", True, 120, 0, 0.0, 0)
    aug = cfg.AUGMENTATION
    assert (aug.AA, aug.COLOR_JITTER, aug.RE_PROB, aug.MIXUP, aug.SMOOTHING, tuple(aug.SCALE)) == (
        "", 0.0, 0.0, 0.0, 0.0, (0.08, 1.0))
    assert not cfg.NET.EMA.USE and cfg.DATASET.TRAIN_INTERPOLATION == "bilinear"
    assert child_loader_policy(cfg, spec).eval_interpolation == "bilinear"
    assert int(224 / cfg.DATASET.CROP_PCT) == 256

    finetune = load_config(os.path.join(CONFIGS, "retrain", "peleenet_finetune.yaml"))
    differences = {key: value for key, value in _flat(finetune).items() if _flat(cfg)[key] != value}
    assert differences == {"MODEL": "peleenet_finetune", "LR": 0.005, "EPOCHS": 20,
                           "INITIAL_CHECKPOINT": "./experiments/workspace/ckps/peleenet_acc7208.pth.tar"}

    demo = load_config(os.path.join(CONFIGS, "retrain", "peleenet_demo.yaml"))
    differences = {key: value for key, value in _flat(demo).items() if _flat(cfg)[key] != value}
    assert set(differences) == {  # the recipe, shrunk to the demo tree and a short run
        "DATA_DIR", "MODEL", "LOG_INTERVAL", "WORKERS", "NUM_GPU", "DATASET.NUM_CLASSES",
        "DATASET.IMAGE_SIZE", "DATASET.BATCH_SIZE", "DATASET.VAL_BATCH_MUL", "LR", "EPOCHS",
        "WARMUP_EPOCHS", "WARMUP_LR", "AUGMENTATION.SCALE"}

    test = load_config(os.path.join(CONFIGS, "test", "peleenet.yaml"))
    spec = resolve_child(test)
    assert (spec.model, spec.image_size, test.DATASET.CROP_PCT) == ("peleenet", 224, 0.875)
    assert child_loader_policy(test, spec).eval_interpolation == "bilinear"
    assert test.RESUME_PATH.endswith("peleenet_acc7208.pth.tar") and not test.AUTO_RESUME
