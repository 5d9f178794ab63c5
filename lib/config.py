"""Cream's configuration: yacs defaults with the reference implementation's keys.

Every YAML shipped by the reference (``experiments/configs/*``) loads unchanged. Keys added here
are marked "(added)"; their defaults keep the reference behaviour where it was sound.
"""
from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence

from yacs.config import CfgNode as CN

__all__ = ["get_default_config", "load_config", "shipped_config", "ConfigError"]

# experiments/configs of this checkout: the recipes (a fact lives in one YAML file)
_SHIPPED_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "experiments", "configs")


class ConfigError(ValueError):
    """A config file or override the user can fix: the message names the key and the fix."""


def get_default_config() -> CN:
    """A fresh copy of the defaults (never a shared module-level object)."""
    c = CN()
    # (added) the NAS method tools/main.py's modes run (lib.engine.ENGINES): 'cream'
    c.METHOD = "cream"
    c.AUTO_RESUME = True
    c.DATA_DIR = "./data/imagenet"
    c.MODEL = "cream"
    c.RESUME_PATH = "./experiments/ckps/resume.pth.tar"
    c.SAVE_PATH = "./experiments/workspace"
    c.SEED = 42
    c.LOG_INTERVAL = 50
    c.RECOVERY_INTERVAL = 0
    # (added) checkpoints kept besides last.pdparams and model_best.pdparams: the best epochs by
    # EVAL_METRICS (checkpoint-<epoch>.pdparams; timm's --checkpoint-hist)
    c.CHECKPOINT_HIST = 10
    c.WORKERS = 4
    c.NUM_GPU = 1
    c.SAVE_IMAGES = False
    c.AMP = False
    c.OUTPUT = "output/path/"
    c.EVAL_METRICS = "prec1"
    c.TTA = 0
    c.LOCAL_RANK = 0
    c.VERBOSE = False

    c.DATASET = CN()
    c.DATASET.NUM_CLASSES = 1000
    c.DATASET.IMAGE_SIZE = 224
    c.DATASET.INTERPOLATION = "bilinear"
    c.DATASET.BATCH_SIZE = 32
    c.DATASET.NO_PREFECHTER = False  # (sic) the reference's spelling, kept so its YAMLs load
    c.DATASET.PIN_MEM = True
    c.DATASET.VAL_BATCH_MUL = 4
    # (added) retrain/test of a released NET.SELECTION use its published image size (the
    # reference always did, ignoring IMAGE_SIZE); False makes them use DATASET.IMAGE_SIZE
    c.DATASET.SELECTION_IMAGE_SIZE = True

    c.NET = CN()
    c.NET.SELECTION = 14
    # (added) the arch list used when SELECTION is -1, e.g. [[0],[3],[3,3],[3,3],[3],[3],[0]]
    c.NET.INPUT_ARCH = []
    # (added) retrain the best path of a search's board.json (with SELECTION -1), e.g.
    # ./experiments/workspace/train/Supernet_Training/board.json
    c.NET.BOARD_JSON = ""
    c.NET.GP = "avg"
    c.NET.DROPOUT_RATE = 0.0
    # (added) start the classifier at zero weights; the reference's init (uniform +-1/sqrt(classes))
    # makes large first logits with few classes, so the first steps overshoot
    c.NET.ZERO_INIT_CLASSIFIER = False
    c.NET.EMA = CN()
    c.NET.EMA.USE = True
    c.NET.EMA.FORCE_CPU = False
    c.NET.EMA.DECAY = 0.9998

    # (added) how the test mode evaluates: 'auto' (Paddle Inference with oneDNN on CPU for 1000+
    # images, several times dygraph's speed; dygraph otherwise), 'dygraph' or 'paddle_inference'
    # (see lib/engine/test.py)
    c.TEST = CN()
    c.TEST.INFERENCE = "auto"

    c.OPT = "sgd"
    c.OPT_EPS = 1e-2
    c.MOMENTUM = 0.9
    c.WEIGHT_DECAY = 1e-4
    c.OPTIMIZER = CN()
    c.OPTIMIZER.NAME = "sgd"
    c.OPTIMIZER.MOMENTUM = 0.9
    c.OPTIMIZER.WEIGHT_DECAY = 1e-3

    c.SCHED = "sgd"
    c.LR_NOISE_PCT = 0.67
    c.LR_NOISE_STD = 1.0
    c.WARMUP_LR = 1e-4
    c.MIN_LR = 1e-5
    c.EPOCHS = 200
    c.START_EPOCH = None
    c.DECAY_EPOCHS = 30.0
    c.WARMUP_EPOCHS = 3
    c.COOLDOWN_EPOCHS = 10
    c.PATIENCE_EPOCHS = 10
    c.DECAY_RATE = 0.1
    c.LR = 1e-2
    c.LR_NOISE = None
    c.META_LR = 1e-4

    c.AUGMENTATION = CN()
    c.AUGMENTATION.AA = "rand-m9-mstd0.5"
    c.AUGMENTATION.COLOR_JITTER = 0.4
    c.AUGMENTATION.RE_PROB = 0.2
    c.AUGMENTATION.RE_MODE = "pixel"
    # (added) area range of the training random-resized crop (timm's --scale; its default)
    c.AUGMENTATION.SCALE = (0.08, 1.0)
    c.AUGMENTATION.MIXUP = 0.0
    c.AUGMENTATION.MIXUP_OFF_EPOCH = 0
    c.AUGMENTATION.SMOOTHING = 0.1

    c.BATCHNORM = CN()
    c.BATCHNORM.SYNC_BN = False
    c.BATCHNORM.BN_TF = False
    c.BATCHNORM.BN_MOMENTUM = 0.1
    c.BATCHNORM.BN_EPS = 1e-5

    c.SUPERNET = CN()
    c.SUPERNET.UPDATE_ITER = 1300
    c.SUPERNET.SLICE = 4
    c.SUPERNET.POOL_SIZE = 10
    c.SUPERNET.RESUNIT = False
    c.SUPERNET.DIL_CONV = False
    # the meta-matching network's second-order update (with PICK_METHOD 'meta'); the reference
    # declared this key but never read it: False keeps the meta layer fixed (an ablation)
    c.SUPERNET.UPDATE_2ND = True
    c.SUPERNET.FLOPS_MAXIMUM = 600
    c.SUPERNET.FLOPS_MINIMUM = 0
    # teacher of each step: 'meta' (meta-matching score), 'top1' (the board's best), or 'none'
    # (added value: no distillation and no meta updates, plain CE; the board still records paths)
    c.SUPERNET.PICK_METHOD = "meta"
    # the board, distillation and meta updates start after this epoch (-1: from the first epoch)
    c.SUPERNET.META_STA_EPOCH = 20
    # path sampling: 'even' (uniform), 'pre_prob' (PRE_PROB per choice) or 'teacher' (choice
    # frequencies on the board)
    c.SUPERNET.HOW_TO_PROB = "pre_prob"
    c.SUPERNET.PRE_PROB = (0.05, 0.2, 0.05, 0.5, 0.05, 0.15)
    # (added) random paths validated after every epoch (the same ones all run long), besides the
    # board's best path; the reference validated one new random path per epoch
    c.SUPERNET.VAL_PATHS = 3
    # (added) before a path is validated, its batch norms get statistics of that path alone, from
    # this many of the epoch's last training batches (SPOS's recalibration; the reference used the
    # running statistics, which mix all paths); 0 keeps the running statistics
    c.SUPERNET.VAL_BN_BATCHES = 4
    # (added) with HOW_TO_PROB 'teacher', this share of each draw's probability is uniform over the
    # choices and the rest follows the board's choice frequencies, so no choice stops training
    # (the reference's 'teacher' probabilities gave choices missing from the board zero; it
    # sampled uniformly only because of a bug). 0 is the frequencies alone
    c.SUPERNET.UNIFORM_MIX = 0.5
    # (added) distillation and meta-matching updates wait (after META_STA_EPOCH) until the board's
    # best path reaches this validation top-1 (%) at the end of an epoch: a teacher no better than
    # chance only pulls the student towards a uniform prediction. 0: no wait (the reference)
    c.SUPERNET.TEACHER_MIN_PREC1 = 0.0
    # (added) every candidate block of a searched layer starts as the same function, that of the
    # smallest choice (lib.models.supernet.align_choice_init); False: independent random blocks
    # (the reference)
    c.SUPERNET.ALIGNED_INIT = False
    # (added) the search's learning rate rises linearly from 0 to LR over this many steps before
    # its linear decay; 0: no warm-up (the reference)
    c.SUPERNET.WARMUP_STEPS = 0
    return c


def shipped_config(mode: str, name: str) -> str:
    """Path of a config shipped with this checkout, e.g. ``shipped_config("retrain", "14.yaml")``
    -> ``experiments/configs/retrain/14.yaml``."""
    return os.path.join(_SHIPPED_CONFIGS, mode, name)


def _parse_overrides(overrides: Sequence[str]) -> list:
    if len(overrides) % 2:
        raise ConfigError(
            f"overrides come in KEY VALUE pairs, got an odd count: {' '.join(overrides)!r}"
        )
    return list(overrides)


def _key_error_text(err: Exception) -> str:
    # yacs says "Non-existent config key: NET.X" (file) or "Non-existent key: NET.X" (list)
    msg = err.args[0] if err.args else str(err)
    return f"{msg}; check its spelling against lib/config.py, which lists every valid key"


def load_config(path: Optional[str] = None, overrides: Iterable[str] = ()) -> CN:
    """Defaults, then the YAML at ``path``, then ``KEY VALUE`` overrides; returned frozen."""
    cfg = get_default_config()
    if path is not None:
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        try:
            cfg.merge_from_file(path)
        except KeyError as e:
            raise ConfigError(f"{path}: {_key_error_text(e)}") from None
        except ValueError as e:
            raise ConfigError(f"{path}: {e}") from None
    overrides = _parse_overrides(list(overrides))
    if overrides:
        try:
            cfg.merge_from_list(overrides)
        except (KeyError, AssertionError) as e:
            raise ConfigError(f"command-line override: {_key_error_text(e)}") from None
        except ValueError as e:
            raise ConfigError(f"command-line override: {e}") from None
    cfg.freeze()
    return cfg
