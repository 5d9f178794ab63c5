"""Cream's configuration: yacs defaults with the reference implementation's keys.

Every YAML shipped by the reference (``experiments/configs/*``) loads unchanged. Keys added here
are marked "(added)"; their defaults keep the reference behaviour where it was sound.
"""
from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence

import yaml
from yacs.config import CfgNode as CN

from lib.spos import OFFICIAL_WIDTHS, EvolutionConfig
from pimm.data.constants import DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from pimm.utils.amp import AMP_DTYPES, parse_amp_level

__all__ = ["get_default_config", "load_config", "shipped_config", "ConfigError"]

# experiments/configs of this checkout: the recipes (a fact lives in one YAML file)
_SHIPPED_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "experiments", "configs")


class ConfigError(ValueError):
    """A config file or override the user can fix: the message names the key and the fix."""


def get_default_config() -> CN:
    """A fresh copy of the defaults (never a shared module-level object)."""
    c = CN()
    # (added) the NAS method tools/main.py's modes run (lib.engine.ENGINES): 'cream', 'spos' or 'pdarts'
    c.METHOD = "cream"
    c.AUTO_RESUME = True
    c.DATA_DIR = "./data/imagenet"
    c.MODEL = "cream"
    c.RESUME_PATH = "./experiments/ckps/resume.pth.tar"
    # (added) retrain: the weights to start from (fine-tuning; timm's --initial-checkpoint), e.g.
    # a released .pth.tar: optimizer, LR schedule and epochs start afresh (RESUME_PATH instead
    # continues a run). A run folder with a checkpoint of its own resumes from that one
    c.INITIAL_CHECKPOINT = ""
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
    # mixed precision of training (retrain, search), GPU only: 'O0' float32; 'O1' autocast (white-
    # listed ops in AMP_DTYPE); 'O2' also AMP_DTYPE parameters with float32 master weights. The
    # reference's booleans still read: False is 'O0', True 'O1' (pimm.utils.amp)
    c.AMP = "O0"
    # (added) the low-precision type of AMP: 'float16' (with dynamic loss scaling, its state kept in
    # checkpoints) or 'bfloat16' (no loss scaling; Ampere GPUs and later)
    c.AMP_DTYPE = "float16"
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
    # (added) unreadable images (truncated, or not images) are skipped with a warning; the run
    # stops when more than this share of a batch (beyond one image) or of an epoch is unreadable
    c.DATASET.MAX_BAD_IMAGE_FRACTION = 0.1
    # (added) what DATA_DIR holds: 'folder' (ImageNet-style train/ and val/ class folders) or
    # 'cifar10' (CIFAR-10's python batches data_batch_1..5 and test_batch; val is test_batch)
    c.DATASET.NAME = "folder"
    # (added) how the loaders turn pixels into network input (pimm.data.PixelNormalization):
    # (pixel / MAX_PIXEL_VALUE - MEAN) / STD per channel, MEAN and STD in RGB order as fractions
    # of MAX_PIXEL_VALUE, then the channels in COLOR_ORDER ('rgb' or 'bgr'). The default is
    # ImageNet's normalisation; CIFAR-10 configs set CIFAR-10's (pimm.data.CIFAR10_DEFAULT_MEAN
    # / _STD); official SPOS networks take raw BGR 0-255 values:
    # MEAN [0., 0., 0.], STD [1., 1., 1.], MAX_PIXEL_VALUE 1.0, COLOR_ORDER 'bgr'
    c.DATASET.MEAN = IMAGENET_DEFAULT_MEAN
    c.DATASET.STD = IMAGENET_DEFAULT_STD
    c.DATASET.MAX_PIXEL_VALUE = 255.0
    c.DATASET.COLOR_ORDER = "rgb"
    # (added) resampling of the training random-resized crop: 'random' (bilinear or bicubic per
    # image, timm's and Cream's retrain), 'bilinear', 'bicubic', 'nearest'
    c.DATASET.TRAIN_INTERPOLATION = "random"
    # (added) retrain/test evaluation: shorter side to IMAGE_SIZE / CROP_PCT with
    # EVAL_INTERPOLATION, centre crop IMAGE_SIZE. '' keeps the network's own resampling: bicubic
    # for Cream's child nets (the reference's retrain and test), DATASET.INTERPOLATION for a
    # NET.MODEL
    c.DATASET.EVAL_INTERPOLATION = ""
    c.DATASET.CROP_PCT = DEFAULT_CROP_PCT

    c.NET = CN()
    # (added) retrain/test a network registered with pimm (pimm.models.list_models(), e.g.
    # 'peleenet') at DATASET.IMAGE_SIZE; '' (default) means Cream's child net of NET.SELECTION,
    # NET.INPUT_ARCH or NET.BOARD_JSON
    c.NET.MODEL = ""
    c.NET.SELECTION = 14
    # (added) the arch list used when SELECTION is -1, e.g. [[0],[3],[3,3],[3,3],[3],[3],[0]]
    c.NET.INPUT_ARCH = []
    # (added) retrain the best path of a search's board.json (with SELECTION -1), e.g.
    # ./experiments/workspace/train/Supernet_Training/board.json
    c.NET.BOARD_JSON = ""
    # (added) True builds every choice a NET.INPUT_ARCH lists; False (the reference) builds a stage
    # with a single layer from its template block whatever its choice, which the released nets
    # depend on. The best path of a NET.BOARD_JSON is always built exactly: in a space of one layer
    # per searched stage the reference's rule makes every path the same network. A correlation
    # study trains paths alone with True: the networks the supernet ran
    c.NET.EXACT_ARCH = False
    c.NET.GP = "avg"
    c.NET.DROPOUT_RATE = 0.0
    # (added) start the classifier at zero weights; the reference's init (uniform +-1/sqrt(classes))
    # makes large first logits with few classes, so the first steps overshoot (Cream's nets only)
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
    # (added) WEIGHT_DECAY spares biases and batch-norm weights (timm's filter_bias_and_bn);
    # False decays every parameter, as torch.optim.SGD(model.parameters(), ...) does
    c.FILTER_BIAS_AND_BN = True
    c.OPTIMIZER = CN()
    c.OPTIMIZER.NAME = "sgd"
    c.OPTIMIZER.MOMENTUM = 0.9
    c.OPTIMIZER.WEIGHT_DECAY = 1e-3

    c.SCHED = "sgd"
    # (added) move the LR schedule after every update instead of once per epoch (cosine, step);
    # its epoch counts (EPOCHS, WARMUP_EPOCHS, DECAY_EPOCHS) are still given in epochs
    c.SCHED_ON_UPDATES = False
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
    # (added) clip the gradients' global L2 norm to this value before each update (0: no clipping)
    c.CLIP_GRAD = 0.0

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
    # (added) Cutout of this side length on training images (DATASET.NAME 'cifar10' only; 0: none)
    c.AUGMENTATION.CUTOUT_LENGTH = 0

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
    # (added) supernet training (Cream's search, SPOS's supernet): the learning rate rises linearly
    # from 0 to LR over this many steps, then follows the linear decay to 0 (whose clock counts
    # them); 0: no warm-up (both references)
    c.SUPERNET.WARMUP_STEPS = 0

    # (added) DARTS / P-DARTS (METHOD 'pdarts'; README "P-DARTS"). retrain and test build the
    # evaluation network of GENOTYPE: a published name (PDARTS, DARTS_V1, DARTS_V2), a
    # genotypes.json a search wrote (its 'recommended' entry) or FILE:NAME for another entry
    c.DARTS = CN()
    c.DARTS.GENOTYPE = "PDARTS"
    # 'cifar' (NetworkCIFAR: 32 px images) or 'imagenet' (NetworkImageNet: 224 px)
    c.DARTS.NETWORK = "cifar"
    c.DARTS.INIT_CHANNELS = 36
    c.DARTS.LAYERS = 20
    # the auxiliary head after the second reduction cell adds AUXILIARY_WEIGHT x its loss
    c.DARTS.AUXILIARY = True
    c.DARTS.AUXILIARY_WEIGHT = 0.4
    # drop-path probability, raised linearly from 0 in epoch 0 to DROP_PATH_PROB at EPOCHS
    c.DARTS.DROP_PATH_PROB = 0.3
    # the search (mode train): one entry per stage in CELLS, CHANNELS, NUM_OPS (operations in
    # play per edge; the first is all 8) and SKIP_DROPOUT (the stage's skip-connect dropout rate;
    # official CIFAR-10 0.0/0.4/0.7, the README's 0.1/0.4/0.7). Each stage trains EPOCHS epochs,
    # the first WEIGHTS_ONLY_EPOCHS of them the weights only (SGD: LR, MIN_LR, MOMENTUM,
    # WEIGHT_DECAY, CLIP_GRAD, cosine per stage), then also the architecture (Adam at ARCH_LR,
    # betas ARCH_BETAS, ARCH_WEIGHT_DECAY) on the other TRAIN_PORTION of DATA_DIR's training set
    c.DARTS.SEARCH = CN()
    c.DARTS.SEARCH.CELLS = [5, 11, 17]
    c.DARTS.SEARCH.CHANNELS = [16, 16, 16]
    c.DARTS.SEARCH.NUM_OPS = [8, 5, 3]
    c.DARTS.SEARCH.SKIP_DROPOUT = [0.0, 0.4, 0.7]
    # within a stage the skip-connect dropout decays as exp(-SKIP_DROPOUT_DECAY x epochs since the
    # architecture started training)
    c.DARTS.SEARCH.SKIP_DROPOUT_DECAY = 0.2
    c.DARTS.SEARCH.EPOCHS = 25
    c.DARTS.SEARCH.WEIGHTS_ONLY_EPOCHS = 10
    c.DARTS.SEARCH.TRAIN_PORTION = 0.5
    c.DARTS.SEARCH.ARCH_LR = 6e-4
    c.DARTS.SEARCH.ARCH_BETAS = [0.5, 0.999]
    c.DARTS.SEARCH.ARCH_WEIGHT_DECAY = 1e-3
    # the last VAL_EPOCHS epochs of each stage are validated on the architecture half
    c.DARTS.SEARCH.VAL_EPOCHS = 5
    # genotypes.json's 'recommended' entry keeps at most this many skip-connects in the normal cell
    c.DARTS.SEARCH.MAX_SKIP = 2
    # (added) SPOS, Single Path One-Shot (METHOD 'spos'; README "SPOS"). Its supernet training
    # validates like Cream's search (SUPERNET.VAL_PATHS, SUPERNET.VAL_BN_BATCHES); the evolution
    # (mode evolve) reads SPOS.SUPERNET, HOLDOUT_SPLIT, BN_BATCHES and EVOLUTION.* with METHOD
    # 'cream' too, to search Cream's supernet (built from the SUPERNET.* keys).
    c.SPOS = CN()
    # the widths of the ShuffleNetV2 space (lib.spos.space.Widths): the official network's by
    # default, narrower for small demos; supernet, evolution and child must use the same ones
    c.SPOS.STAGE_CHANNELS = list(OFFICIAL_WIDTHS.stage_channels)
    c.SPOS.HEAD_CHANNELS = OFFICIAL_WIDTHS.head_channels
    # supernet training: each step's path uniform within this MFLOPs window, drawn by picking a
    # FLOPS_BIN wide bin first (the official [290, 360] and 10); [] samples all paths uniformly
    c.SPOS.FLOPS_RANGE = []
    c.SPOS.FLOPS_BIN = 10.0
    # evolve: the supernet checkpoint to search; METHOD spos: an SPOS supernet run's .pdparams or
    # the official checkpoint-150000.pth.tar; METHOD cream: a Cream search's (SUPERNET.* keys as
    # in its run)
    c.SPOS.SUPERNET = ""
    # evolve: each candidate's batch norms are recalibrated on BN_BATCHES training batches (the
    # same ones for every candidate), then it is scored (top-1) on DATA_DIR/<HOLDOUT_SPLIT>
    c.SPOS.HOLDOUT_SPLIT = "val"
    c.SPOS.BN_BATCHES = 200
    # evolve: generation 0 is POPULATION random paths; each of GENERATIONS more breeds MUTATIONS
    # (genes redrawn with MUTATION_PROB) and CROSSOVERS children of the TOP_K best paths so far and
    # fills up with random paths; paths above FLOPS_LIMIT MFLOPs (0: no limit) are not scored
    official = EvolutionConfig()
    c.SPOS.EVOLUTION = CN()
    c.SPOS.EVOLUTION.POPULATION = official.population
    c.SPOS.EVOLUTION.TOP_K = official.top_k
    c.SPOS.EVOLUTION.MUTATIONS = official.mutations
    c.SPOS.EVOLUTION.CROSSOVERS = official.crossovers
    c.SPOS.EVOLUTION.MUTATION_PROB = official.mutation_prob
    c.SPOS.EVOLUTION.GENERATIONS = official.generations
    c.SPOS.EVOLUTION.FLOPS_LIMIT = 330.0
    # retrain / test (METHOD spos): the child's path, 20 choices in 0..3; empty: the best path of
    # the evolution.json at EVOLUTION_JSON, or with neither the officially released path
    c.SPOS.ARCH = []
    c.SPOS.EVOLUTION_JSON = ""
    # (added) ``correlation`` mode: how well a supernet ranks paths (lib/engine/correlation.py)
    c.CORRELATION = CN()
    # the supernet checkpoint (a search's last.pdparams or model_best.pdparams); the supernet's
    # keys (SUPERNET.FLOPS_*/SLICE/RESUNIT/DIL_CONV, DATASET.NUM_CLASSES/IMAGE_SIZE, NET.GP,
    # BATCHNORM.*) come from the run config stored in it, this config's when it stores none
    c.CORRELATION.CHECKPOINT = ""
    # the accuracies of the same paths trained alone: run folders of retrain (or test) runs, glob
    # patterns allowed, e.g. ['./experiments/workspace/retrain/corr_path_*'] ...
    c.CORRELATION.RUNS = []
    # ... or a CSV file with the columns arch (an arch list) and top1
    c.CORRELATION.CSV = ""
    # without stand-alone accuracies, the paths to evaluate and to retrain: 'random' (NUM_PATHS
    # distinct random paths inside the FLOPs range, drawn with SEED) or 'board' (BOARD_JSON's paths)
    c.CORRELATION.PATHS = "random"
    c.CORRELATION.NUM_PATHS = 30
    c.CORRELATION.BOARD_JSON = ""
    # training batches that recalibrate each path's batch norm before it is evaluated (SPOS's
    # recalibration, shared with the search's validation); 0 keeps the supernet's running statistics
    c.CORRELATION.BN_BATCHES = 10
    # the retrain config of the commands written for the paths (retrain_paths.sh)
    c.CORRELATION.RETRAIN_CONFIG = "./experiments/configs/retrain/searched.yaml"
    return c


def shipped_config(mode: str, name: str) -> str:
    """Path of a config shipped with this checkout, e.g. ``shipped_config("retrain", "14.yaml")``
    -> ``experiments/configs/retrain/14.yaml``."""
    return os.path.join(_SHIPPED_CONFIGS, mode, name)


# keys the reference wrote as booleans that now take a level, and what reads a boolean as one
_BOOLEAN_LEVELS = {"AMP": parse_amp_level}


def _parse_overrides(overrides: Sequence[str]) -> list:
    if len(overrides) % 2:
        raise ConfigError(
            f"overrides come in KEY VALUE pairs, got an odd count: {' '.join(overrides)!r}"
        )
    pairs = list(overrides)
    for i in range(0, len(pairs), 2):
        as_level = _BOOLEAN_LEVELS.get(pairs[i])
        value = str(pairs[i + 1]).strip().lower()
        if as_level and value in ("true", "false"):
            pairs[i + 1] = as_level(value == "true")
    return pairs


def _read_boolean_levels(content: CN) -> CN:
    """``content`` with the reference's booleans of _BOOLEAN_LEVELS keys read as levels."""
    for key, as_level in _BOOLEAN_LEVELS.items():
        if isinstance(content.get(key), bool):
            content[key] = as_level(content[key])
    return content


def _key_error_text(err: Exception) -> str:
    # yacs says "Non-existent config key: NET.X" (file) or "Non-existent key: NET.X" (list)
    msg = err.args[0] if err.args else str(err)
    return f"{msg}; check its spelling against lib/config.py, which lists every valid key"


def _read_yaml(path: str) -> CN:
    """The mapping a config file holds; a file that is not YAML, or not a mapping, is a
    ConfigError naming the line."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path} is not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the config file {path}: {err}") from None
    if data is None:
        return CN()
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds a YAML {type(data).__name__}, not a mapping of config "
                          "keys (KEY: value lines, e.g. 'EPOCHS: 10')")
    return CN(data)


# (key, lowest valid value) of numbers no engine can run with
_LOWER_BOUNDS = (("DATASET.IMAGE_SIZE", 1), ("DATASET.BATCH_SIZE", 1), ("DATASET.VAL_BATCH_MUL", 1),
                 ("DATASET.NUM_CLASSES", 1), ("WORKERS", 0), ("RECOVERY_INTERVAL", 0),
                 ("CHECKPOINT_HIST", 1))


def _check_values(cfg: CN) -> None:
    for key, low in _LOWER_BOUNDS:
        node = cfg
        for part in key.split("."):
            node = node[part]
        if node < low:
            raise ConfigError(f"{key} must be >= {low}, got {node}")
    try:  # here, not in the engines: preflight checks run before any error handler of a rank
        parse_amp_level(cfg.AMP)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if cfg.AMP_DTYPE not in AMP_DTYPES:
        raise ConfigError(f"AMP_DTYPE must be one of {AMP_DTYPES}, got {cfg.AMP_DTYPE!r}")
    if cfg.NET.ZERO_INIT_CLASSIFIER and (cfg.NET.MODEL or cfg.METHOD != "cream"):
        raise ConfigError("NET.ZERO_INIT_CLASSIFIER applies to Cream's networks only (its child nets "
                          "and supernet), not to NET.MODEL or METHOD spos/pdarts: set it False")
    fraction = cfg.DATASET.MAX_BAD_IMAGE_FRACTION
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"DATASET.MAX_BAD_IMAGE_FRACTION is a share of images, between 0 and 1; "
                          f"got {fraction}")


def load_config(path: Optional[str] = None, overrides: Iterable[str] = ()) -> CN:
    """Defaults, then the YAML at ``path``, then ``KEY VALUE`` overrides; returned frozen. Values
    no engine can run with (an image size of 0, negative workers, ...) are a ConfigError."""
    cfg = get_default_config()
    if path is not None:
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        content = _read_yaml(path)
        try:
            cfg.merge_from_other_cfg(_read_boolean_levels(content))
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
    _check_values(cfg)
    cfg.freeze()
    return cfg
