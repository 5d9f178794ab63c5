"""The child network a config asks for (``retrain`` and ``test``): a released ``NET.SELECTION``,
an explicit ``NET.INPUT_ARCH``, the best path of a search's ``NET.BOARD_JSON``, or any network
registered with pimm (``NET.MODEL``, e.g. ``peleenet``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import paddle
from yacs.config import CfgNode

from lib.config import ConfigError
from lib.engine.common import LoaderPolicy, RunError
from lib.models import CREAM_ARCHS, build_childnet, resolve_arch, validate_arch
from lib.models.childnet import EVAL_INTERPOLATION
from lib.search.board_file import best_board_arch
from pimm.deploy import eval_preprocess
from pimm.models import create_model, model_entrypoint

__all__ = ["ChildSpec", "resolve_child", "create_child_model", "checkpoint_misfit",
           "arch_from_board", "eval_interpolation", "child_eval_preprocess", "child_loader_policy"]


@dataclass(frozen=True)
class ChildSpec:
    """The child network a config asks for."""

    arch: Optional[List[List[int]]]  # None for a NET.MODEL
    image_size: int
    selection: int  # -1 for an explicit arch list, a board path or a NET.MODEL
    source: str  # where the arch came from, for logs and metrics.json
    model: str = ""  # NET.MODEL: the pimm model's registered name ('' for a Cream child net)

    @property
    def keys(self) -> str:
        """The config keys that decide the network's shape (for 'does not fit' messages)."""
        return "NET.MODEL" if self.model else "NET.SELECTION (or NET.INPUT_ARCH)"

    @property
    def name(self) -> str:
        """The network in words: the model name, or the arch of a Cream child net."""
        return self.model or str(self.arch)


def arch_from_board(path: str) -> List[List[int]]:
    """``NET.BOARD_JSON``'s best path within its FLOPs range (``lib.search.board_file``); a
    missing or unusable file is a RunError naming the key."""
    try:
        return best_board_arch(path)
    except FileNotFoundError:
        raise RunError(f"NET.BOARD_JSON: no file at {path}; point it at the board.json a search "
                       "wrote into its run folder") from None
    except ValueError as err:
        raise RunError(f"NET.BOARD_JSON: {err}") from err


def resolve_child(cfg: CfgNode) -> ChildSpec:
    """A released ``NET.SELECTION``, or ``SELECTION -1`` with ``NET.INPUT_ARCH`` or
    ``NET.BOARD_JSON``. Released nets run at their published size unless
    ``DATASET.SELECTION_IMAGE_SIZE`` is False; other paths, and a ``NET.MODEL``, at
    ``DATASET.IMAGE_SIZE``."""
    board, input_arch = str(cfg.NET.BOARD_JSON or ""), list(cfg.NET.INPUT_ARCH)
    size = int(cfg.DATASET.IMAGE_SIZE)
    model = str(cfg.NET.MODEL or "")
    if model:
        return _named_model(model, board, input_arch, size)
    selection = int(cfg.NET.SELECTION)
    if selection != -1:
        if selection not in CREAM_ARCHS:
            raise ConfigError(
                f"NET.SELECTION {selection} is not a released Cream net; choose one of "
                f"{sorted(CREAM_ARCHS)}, or -1 with NET.INPUT_ARCH (an arch list) or "
                "NET.BOARD_JSON (a search's board.json)")
        if board or input_arch:
            raise ConfigError(f"NET.SELECTION {selection} conflicts with NET.INPUT_ARCH/"
                              "NET.BOARD_JSON: set NET.SELECTION -1 to use a searched path")
        arch, published_size = resolve_arch(selection)
        if cfg.DATASET.SELECTION_IMAGE_SIZE:
            size = published_size
        return ChildSpec(arch, size, selection, f"selection {selection}")
    if board and input_arch:
        raise ConfigError("NET.INPUT_ARCH and NET.BOARD_JSON are both set: keep one of them")
    if board:
        return ChildSpec(arch_from_board(board), size, -1, f"best path of {board}")
    if not input_arch:
        raise ConfigError("NET.SELECTION -1 needs NET.INPUT_ARCH (e.g. "
                          f"\"{CREAM_ARCHS[14].arch_list()}\") or NET.BOARD_JSON")
    try:
        arch = validate_arch(input_arch)
    except ValueError as err:
        raise ConfigError(f"NET.INPUT_ARCH: {err}") from None
    return ChildSpec(arch, size, -1, "NET.INPUT_ARCH")


def _named_model(model: str, board: str, input_arch: list, size: int) -> ChildSpec:
    try:
        model_entrypoint(model)  # an unknown name's message suggests the closest registered ones
    except ValueError as err:
        raise ConfigError(f"NET.MODEL: {err}") from None
    if board or input_arch:
        raise ConfigError(f"NET.MODEL {model!r} conflicts with NET.INPUT_ARCH/NET.BOARD_JSON: "
                          "set NET.MODEL '' to retrain or test a Cream path")
    return ChildSpec(None, size, -1, f"model {model}", model=model)


def checkpoint_misfit(what: str, spec: ChildSpec, err: Exception, hint: str = "") -> RunError:
    """The RunError for weights ``what`` that do not fit ``spec``'s network: the first problem of
    ``err`` (a CheckpointMismatchError) and the keys to fix; ``hint`` follows ``what``."""
    lines = str(err).splitlines()
    first_problem = lines[1].strip() if len(lines) > 1 else str(err)
    return RunError(f"{what} does not fit {spec.source}{hint}: {first_problem} ... Set "
                    f"{spec.keys} and DATASET.NUM_CLASSES to the ones it was trained with")


def create_child_model(cfg: CfgNode, spec: ChildSpec) -> paddle.nn.Layer:
    """The child network with the config's classes, dropout and pooling."""
    options = dict(num_classes=int(cfg.DATASET.NUM_CLASSES),
                   drop_rate=float(cfg.NET.DROPOUT_RATE), global_pool=str(cfg.NET.GP))
    if not spec.model:
        return build_childnet(spec.arch, **options)
    try:
        return create_model(spec.model, **options)
    except ValueError as err:  # e.g. a pooling the network does not have
        raise ConfigError(f"NET.MODEL {spec.model!r}: {err} (check NET.GP, NET.DROPOUT_RATE, "
                          "DATASET.NUM_CLASSES)") from None


def eval_interpolation(cfg: CfgNode, spec: ChildSpec) -> str:
    """``DATASET.EVAL_INTERPOLATION``, or when empty the network's own: bicubic for Cream's child
    nets (the reference's), ``DATASET.INTERPOLATION`` for a ``NET.MODEL``."""
    chosen = str(cfg.DATASET.EVAL_INTERPOLATION or "")
    if chosen:
        return chosen
    return str(cfg.DATASET.INTERPOLATION) if spec.model else EVAL_INTERPOLATION


def child_eval_preprocess(cfg: CfgNode, spec: ChildSpec) -> Dict[str, Any]:
    """The evaluation transform of ``retrain``/``test`` as an export records it
    (``pimm.deploy.eval_preprocess``): ``spec.image_size``, :func:`eval_interpolation`,
    ``DATASET.CROP_PCT``, ImageNet mean/std."""
    return eval_preprocess(spec.image_size, interpolation=eval_interpolation(cfg, spec),
                           crop_pct=float(cfg.DATASET.CROP_PCT))


def child_loader_policy(cfg: CfgNode, spec: Optional[ChildSpec] = None) -> LoaderPolicy:
    """A child network's loaders (retrain, test): RandAugment ``AUGMENTATION.AA`` on training
    images, :func:`eval_interpolation` for the evaluation resize (of ``spec``, by default the
    network ``resolve_child(cfg)`` names)."""
    spec = spec if spec is not None else resolve_child(cfg)
    return LoaderPolicy(auto_augment=str(cfg.AUGMENTATION.AA) or None,
                        eval_interpolation=eval_interpolation(cfg, spec))
