"""The child network a config asks for (``retrain`` and ``test``): a released ``NET.SELECTION``,
an explicit ``NET.INPUT_ARCH``, or the best path of a search's ``NET.BOARD_JSON``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import paddle
from yacs.config import CfgNode

from lib.config import ConfigError
from lib.engine.common import LoaderPolicy, RunError
from lib.models import CREAM_ARCHS, build_childnet, resolve_arch, validate_arch
from lib.models.childnet import EVAL_INTERPOLATION
from lib.models.space import SEARCH_RESOLUTION
from lib.search.board_file import best_board_entry
from pimm.utils import profile

__all__ = ["ChildSpec", "resolve_child", "create_child_model", "entry_from_board", "child_loader_policy",
           "child_cost"]


@dataclass(frozen=True)
class ChildSpec:
    """The child network a config asks for."""

    arch: List[List[int]]
    image_size: int
    selection: int  # -1 for an explicit arch list or a board path
    source: str  # where the arch came from, for logs and metrics.json
    # (MFLOPs, M params) as the search counted them (board.json: the budget's count), if known
    search_cost: Optional[Tuple[float, float]] = None


def entry_from_board(path: str) -> Dict[str, Any]:
    """``NET.BOARD_JSON``'s best path within its FLOPs range, its board entry
    (``lib.search.board_file``); a missing or unusable file is a RunError naming the key."""
    try:
        return best_board_entry(path)
    except FileNotFoundError:
        raise RunError(f"NET.BOARD_JSON: no file at {path}; point it at the board.json a search "
                       "wrote into its run folder") from None
    except ValueError as err:
        raise RunError(f"NET.BOARD_JSON: {err}") from err


def resolve_child(cfg: CfgNode) -> ChildSpec:
    """A released ``NET.SELECTION``, or ``SELECTION -1`` with ``NET.INPUT_ARCH`` or
    ``NET.BOARD_JSON``. Released nets run at their published size unless
    ``DATASET.SELECTION_IMAGE_SIZE`` is False; other paths at ``DATASET.IMAGE_SIZE``."""
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
        entry = entry_from_board(board)
        counted = entry.get("flops") is not None and entry.get("params") is not None
        return ChildSpec(entry["arch"], size, -1, f"best path of {board}",
                         (float(entry["flops"]), float(entry["params"])) if counted else None)
    if not input_arch:
        raise ConfigError("NET.SELECTION -1 needs NET.INPUT_ARCH (e.g. "
                          f"\"{CREAM_ARCHS[14].arch_list()}\") or NET.BOARD_JSON")
    try:
        arch = validate_arch(input_arch)
    except ValueError as err:
        raise ConfigError(f"NET.INPUT_ARCH: {err}") from None
    return ChildSpec(arch, size, -1, "NET.INPUT_ARCH")


def create_child_model(cfg: CfgNode, spec: ChildSpec) -> paddle.nn.Layer:
    """The child network with the config's classes, dropout and pooling."""
    return build_childnet(spec.arch, num_classes=int(cfg.DATASET.NUM_CLASSES),
                          drop_rate=float(cfg.NET.DROPOUT_RATE), global_pool=str(cfg.NET.GP),
                          zero_classifier=bool(cfg.NET.ZERO_INIT_CLASSIFIER))


def child_cost(model: paddle.nn.Layer, spec: ChildSpec) -> Dict[str, Any]:
    """What the network costs (thop multiply-adds and all parameters, as the README's table
    counts them): ``mflops`` at its image size, ``mflops_224`` at 224 px (the size a search's
    FLOPs budget refers to), ``params_m``, and ``text``, the three in one phrase, which also gives
    the search's own count for a board path (``search_mflops``, ``search_params_m``: the FLOPs
    table's, by which the budget was applied)."""
    macs, params = profile(model, (1, 3, spec.image_size, spec.image_size))
    cost: Dict[str, Any] = {"mflops": macs / 1e6, "mflops_224": macs / 1e6, "params_m": params / 1e6}
    text = f"{cost['mflops']:.1f} MFLOPs at {spec.image_size} px"
    if spec.image_size != SEARCH_RESOLUTION:
        cost["mflops_224"] = profile(model, (1, 3, SEARCH_RESOLUTION, SEARCH_RESOLUTION))[0] / 1e6
        text += f" ({cost['mflops_224']:.1f} at {SEARCH_RESOLUTION} px)"
    cost["text"] = f"{text}, {cost['params_m']:.2f} M params"
    if spec.search_cost is not None:
        cost["search_mflops"], cost["search_params_m"] = spec.search_cost
        cost["text"] += (f" (the search's count: {spec.search_cost[0]:.1f} MFLOPs, "
                         f"{spec.search_cost[1]:.2f} M params)")
    return cost


def child_loader_policy(cfg: CfgNode) -> LoaderPolicy:
    """A child network's loaders (retrain, test): RandAugment ``AUGMENTATION.AA`` on training
    images, the released nets' bicubic evaluation resize."""
    return LoaderPolicy(auto_augment=str(cfg.AUGMENTATION.AA) or None,
                        eval_interpolation=EVAL_INTERPOLATION)
