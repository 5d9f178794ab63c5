"""The child network a config asks for (``retrain`` and ``test``). METHOD cream: a released
``NET.SELECTION``, an explicit ``NET.INPUT_ARCH``, or the best path of a search's
``NET.BOARD_JSON``. METHOD spos: ``SPOS.ARCH``, the best path of ``SPOS.EVOLUTION_JSON``, or the
released SPOS path (``lib.engine.spos.spos_child_arch``), at the widths ``SPOS.*`` set."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List

import paddle
from yacs.config import CfgNode

from lib.config import ConfigError
from lib.engine.common import LoaderPolicy, RunError, pixel_normalization
from lib.engine.spos import spos_child_arch, spos_widths
from lib.models import CREAM_ARCHS, build_childnet, resolve_arch, validate_arch
from lib.models.childnet import EVAL_INTERPOLATION
from lib.search.board_file import best_board_arch
from lib.spos import build_childnet as build_spos_childnet
from pimm.deploy import eval_preprocess

__all__ = ["ChildSpec", "resolve_child", "create_child_model", "arch_from_board", "child_loader_policy",
           "child_eval_preprocess"]


@dataclass(frozen=True)
class ChildSpec:
    """The child network a config asks for."""

    arch: Any  # Cream: seven lists of choices; SPOS: 20 choices
    image_size: int
    selection: int  # -1 for an explicit arch list, a board path or an SPOS path
    source: str  # where the arch came from, for logs and metrics.json
    method: str = "cream"

    @property
    def keys(self) -> str:
        """The config keys that decide the network's shape (for 'does not fit' messages)."""
        if self.method == "spos":
            return "SPOS.ARCH (or SPOS.EVOLUTION_JSON), SPOS.STAGE_CHANNELS, SPOS.HEAD_CHANNELS"
        return "NET.SELECTION (or NET.INPUT_ARCH)"


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
    ``DATASET.SELECTION_IMAGE_SIZE`` is False; other paths at ``DATASET.IMAGE_SIZE``.
    METHOD spos: see ``lib.engine.spos.spos_child_arch``, at ``DATASET.IMAGE_SIZE``."""
    if str(cfg.METHOD) == "spos":
        arch, source = spos_child_arch(cfg)
        return ChildSpec(list(arch), int(cfg.DATASET.IMAGE_SIZE), -1, source, method="spos")
    selection = int(cfg.NET.SELECTION)
    board, input_arch = str(cfg.NET.BOARD_JSON or ""), list(cfg.NET.INPUT_ARCH)
    size = int(cfg.DATASET.IMAGE_SIZE)
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


def create_child_model(cfg: CfgNode, spec: ChildSpec) -> paddle.nn.Layer:
    """The child network with the config's classes, dropout and pooling (SPOS's pools by average)."""
    if spec.method == "spos":
        return build_spos_childnet(spec.arch, num_classes=int(cfg.DATASET.NUM_CLASSES),
                                   drop_rate=float(cfg.NET.DROPOUT_RATE), widths=spos_widths(cfg))
    return build_childnet(spec.arch, num_classes=int(cfg.DATASET.NUM_CLASSES),
                          drop_rate=float(cfg.NET.DROPOUT_RATE), global_pool=str(cfg.NET.GP))


def child_loader_policy(cfg: CfgNode) -> LoaderPolicy:
    """A child network's loaders (retrain, test): RandAugment ``AUGMENTATION.AA`` on training
    images; the evaluation resize of the released Cream nets (bicubic), or for METHOD spos
    ``DATASET.INTERPOLATION`` (the official SPOS evaluation resizes bilinearly, with OpenCV)."""
    spos = str(cfg.METHOD) == "spos"
    return LoaderPolicy(auto_augment=str(cfg.AUGMENTATION.AA) or None,
                        eval_interpolation=str(cfg.DATASET.INTERPOLATION) if spos else EVAL_INTERPOLATION)


def child_eval_preprocess(cfg: CfgNode, spec: ChildSpec) -> Dict[str, Any]:
    """The evaluation transform of the config's child network as an export records it
    (``pimm.deploy.eval_preprocess``): its image size, resize, and the DATASET normalisation keys."""
    return eval_preprocess(spec.image_size, interpolation=child_loader_policy(cfg).eval_interpolation,
                           **pixel_normalization(cfg))
