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


def test_amp_takes_levels_and_the_references_booleans(tmp_path):
    assert load_config(os.path.join(CONFIGS, "train", "train.yaml")).AMP == "O0"  # AMP: False
    reference = tmp_path / "reference.yaml"
    reference.write_text("AMP: True\n")
    assert load_config(str(reference)).AMP == "O1"
    assert load_config(str(reference), ["AMP", "False"]).AMP == "O0"
    assert load_config(str(reference), ["AMP", "O2", "AMP_DTYPE", "bfloat16"]).AMP == "O2"


def test_pdarts_configs_hold_the_official_recipes():
    from lib.darts import PDARTS
    from lib.engine.darts_search import DartsSearchOptions

    search = load_config(os.path.join(CONFIGS, "pdarts", "search_cifar10.yaml"))
    opts = DartsSearchOptions.from_config(search)
    assert [(s.cells, s.channels, s.num_ops, s.skip_dropout) for s in opts.stages] == [
        (5, 16, 8, 0.0), (11, 16, 5, 0.4), (17, 16, 3, 0.7)]
    assert (opts.epochs, opts.weights_only_epochs, opts.train_portion, opts.max_skip) == (25, 10, 0.5, 2)
    assert (opts.arch_lr, opts.arch_betas, opts.arch_weight_decay) == (6e-4, (0.5, 0.999), 1e-3)
    assert (opts.lr, opts.min_lr, opts.momentum, opts.weight_decay, search.CLIP_GRAD) == (0.025, 0.0, 0.9, 3e-4, 5.0)
    assert (search.METHOD, search.DATASET.NAME, search.DATASET.BATCH_SIZE) == ("pdarts", "cifar10", 96)

    cifar = load_config(os.path.join(CONFIGS, "pdarts", "retrain_cifar10.yaml"))
    assert resolve_child(cifar).arch == PDARTS
    d = cifar.DARTS
    assert (d.NETWORK, d.INIT_CHANNELS, d.LAYERS, d.AUXILIARY, d.AUXILIARY_WEIGHT, d.DROP_PATH_PROB) == (
        "cifar", 36, 20, True, 0.4, 0.3)
    assert (cifar.EPOCHS, cifar.DATASET.BATCH_SIZE, cifar.OPT, cifar.LR, cifar.SCHED, cifar.MIN_LR) == (
        600, 128, "momentum", 0.025, "cosine", 0.0)
    assert (cifar.WEIGHT_DECAY, cifar.CLIP_GRAD, cifar.AUGMENTATION.CUTOUT_LENGTH, cifar.NET.EMA.USE) == (
        3e-4, 5.0, 16, False)
    assert not cifar.FILTER_BIAS_AND_BN  # the official SGD decays biases and batch norms too

    imagenet = load_config(os.path.join(CONFIGS, "pdarts", "retrain_imagenet.yaml"))
    assert resolve_child(imagenet).image_size == 224
    d = imagenet.DARTS
    assert (d.NETWORK, d.INIT_CHANNELS, d.LAYERS, d.AUXILIARY_WEIGHT) == ("imagenet", 48, 14, 0.4)
    assert (imagenet.EPOCHS, imagenet.NUM_GPU * imagenet.DATASET.BATCH_SIZE, imagenet.LR, imagenet.SCHED) == (
        250, 256, 0.1, "linear")
    assert (imagenet.AUGMENTATION.SMOOTHING, imagenet.WEIGHT_DECAY, imagenet.CLIP_GRAD) == (0.1, 3e-5, 5.0)
    assert not imagenet.FILTER_BIAS_AND_BN


def test_pdarts_search_refuses_amp():  # its bilevel steps run in float32 only
    from lib.config import ConfigError
    from lib.engine.darts_search import DartsSearchOptions

    search = load_config(os.path.join(CONFIGS, "pdarts", "search_cifar10.yaml"), ["AMP", "O1"])
    with pytest.raises(ConfigError, match="AMP O1 is not supported by the P-DARTS search"):
        DartsSearchOptions.from_config(search)


def test_spos_configs_carry_the_official_recipes():
    from lib.engine.evolve import evolution_config
    from lib.spos import RELEASED_ARCH, EvolutionConfig

    spos = os.path.join(CONFIGS, "spos")
    official_input = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 1.0, "bgr")  # raw BGR 0-255
    for name in ("supernet", "evolve", "retrain", "test"):
        cfg = load_config(os.path.join(spos, f"{name}.yaml"))
        assert cfg.METHOD == "spos" and cfg.DATASET.IMAGE_SIZE == 224 and cfg.DATASET.INTERPOLATION == "bilinear"
        assert (tuple(cfg.DATASET.MEAN), tuple(cfg.DATASET.STD), cfg.DATASET.MAX_PIXEL_VALUE,
                cfg.DATASET.COLOR_ORDER) == official_input
        assert list(cfg.SPOS.STAGE_CHANNELS) == [64, 160, 320, 640] and cfg.SPOS.HEAD_CHANNELS == 1024
    supernet = load_config(os.path.join(spos, "supernet.yaml"))
    retrain = load_config(os.path.join(spos, "retrain.yaml"))
    for cfg in (supernet, retrain):  # SGD 0.5, momentum 0.9 (not Nesterov), 4e-5, 1024 images a step
        assert (cfg.OPT, cfg.LR, cfg.MOMENTUM, cfg.WEIGHT_DECAY) == ("momentum", 0.5, 0.9, 4e-5)
        assert cfg.NUM_GPU * cfg.DATASET.BATCH_SIZE == 1024 and cfg.AUGMENTATION.SMOOTHING == 0.1
        assert cfg.NET.DROPOUT_RATE == 0.1 and not cfg.NET.EMA.USE and cfg.AUGMENTATION.RE_PROB == 0.0
    assert supernet.EPOCHS == 120 and list(supernet.SPOS.FLOPS_RANGE) == [290.0, 360.0]
    assert supernet.SPOS.FLOPS_BIN == 10.0
    assert (retrain.EPOCHS, retrain.SCHED, retrain.WARMUP_EPOCHS, retrain.AUGMENTATION.AA) == (240, "linear", 0, "")
    evolve = load_config(os.path.join(spos, "evolve.yaml"))
    assert evolution_config(evolve) == EvolutionConfig(flops_limit=330.0, seed=evolve.SEED)
    assert (evolve.SPOS.BN_BATCHES, evolve.DATASET.BATCH_SIZE, evolve.SPOS.HOLDOUT_SPLIT) == (200, 128, "val")
    spec = resolve_child(load_config(os.path.join(spos, "test.yaml")))
    assert tuple(spec.arch) == RELEASED_ARCH and spec.source == "the released SPOS path"


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
