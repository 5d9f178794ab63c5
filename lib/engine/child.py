"""The child network a config asks for (``retrain`` and ``test``). METHOD cream: a released
``NET.SELECTION``, an explicit ``NET.INPUT_ARCH``, or the best path of a search's
``NET.BOARD_JSON``, or any network registered with pimm (``NET.MODEL``, e.g. ``peleenet``).
METHOD spos: ``SPOS.ARCH``, the best path of ``SPOS.EVOLUTION_JSON``, or the released SPOS path
(``lib.engine.spos.spos_child_arch``), at the widths ``SPOS.*`` set. METHOD pdarts: the DARTS
network of ``DARTS.GENOTYPE`` (the ``DARTS`` section). :func:`child_training` says what the
method adds to the retrain loop."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import paddle
from yacs.config import CfgNode

from lib.config import ConfigError
from lib.darts import GenotypeError, NetworkCIFAR, NetworkImageNet, genotype_to_dict, resolve_genotype
from lib.engine.common import LoaderPolicy, RunError, pixel_normalization
from lib.engine.spos import spos_child_arch, spos_widths
from lib.models import CREAM_ARCHS, build_childnet, resolve_arch, validate_arch
from lib.models.childnet import EVAL_INTERPOLATION
from lib.models.space import SEARCH_RESOLUTION
from lib.search.board_file import best_board_entry
from lib.spos import build_childnet as build_spos_childnet
from pimm.deploy import eval_preprocess
from pimm.models import CheckpointMismatchError, create_model, model_entrypoint
from pimm.utils.profile import count_parameters, profile

__all__ = ["ChildSpec", "ChildTraining", "DARTS_NETWORKS", "resolve_child", "create_child_model",
           "checkpoint_misfit", "entry_from_board", "child_cost", "eval_interpolation",
           "child_loader_policy", "child_training", "child_eval_preprocess"]

#: DARTS.NETWORK -> (evaluation network, the image size its auxiliary head is built for)
DARTS_NETWORKS = {"cifar": (NetworkCIFAR, 32), "imagenet": (NetworkImageNet, 224)}


@dataclass(frozen=True)
class ChildSpec:
    """The child network a config asks for."""

    arch: Any  # Cream: seven lists of choices; SPOS: 20 choices; P-DARTS: the Genotype; None: NET.MODEL
    image_size: int
    selection: int  # -1 for an explicit arch list, a board path, an SPOS path, a genotype or a NET.MODEL
    source: str  # where the arch came from, for logs and metrics.json
    method: str = "cream"
    model: str = ""  # NET.MODEL: the pimm model's registered name ('' for a searched child net)
    # (MFLOPs, M params) as the search counted them (board.json: the budget's count), if known
    search_cost: Optional[Tuple[float, float]] = None
    # a Cream path built exactly as listed (a board path, or NET.EXACT_ARCH: as the supernet ran
    # it), not with the reference's template blocks for single-layer stages (effective_arch)
    exact: bool = False

    @property
    def arch_json(self) -> Any:
        """The arch as JSON holds it (metrics.json, export info): a genotype as a dict, else lists."""
        if self.arch is None:
            return None
        if self.method == "pdarts":
            return genotype_to_dict(self.arch)
        return [list(s) if isinstance(s, (list, tuple)) else int(s) for s in self.arch]

    @property
    def name(self) -> str:
        """The network in words: the model name, or the arch of a child net."""
        return self.model or str(self.arch)

    @property
    def keys(self) -> str:
        """The config keys that decide the network's shape (for 'does not fit' messages)."""
        if self.model:
            return "NET.MODEL"
        if self.method == "spos":
            return "SPOS.ARCH (or SPOS.EVOLUTION_JSON), SPOS.STAGE_CHANNELS, SPOS.HEAD_CHANNELS"
        if self.method == "pdarts":
            return "DARTS.GENOTYPE, DARTS.NETWORK, DARTS.INIT_CHANNELS, DARTS.LAYERS, DARTS.AUXILIARY"
        return "NET.SELECTION (or NET.INPUT_ARCH)"


@dataclass(frozen=True)
class ChildTraining:
    """What a method's network adds to the retrain loop: a model that returns
    ``(logits, aux_logits)`` in training gets ``aux_weight`` times the loss of ``aux_logits``
    added, and ``start_epoch(model, epoch, num_epochs)`` runs before every epoch (e.g. to set a
    drop-path rate) and returns what it set, for the epoch's metrics."""

    aux_weight: float = 0.0
    start_epoch: Optional[Callable[[paddle.nn.Layer, int, int], Dict[str, float]]] = None


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


def _resolve_darts_child(cfg: CfgNode) -> ChildSpec:
    d = cfg.DARTS
    if str(d.NETWORK) not in DARTS_NETWORKS:
        raise ConfigError(f"DARTS.NETWORK {d.NETWORK!r} is unknown; choose one of {', '.join(DARTS_NETWORKS)}")
    for key in ("INIT_CHANNELS", "LAYERS"):
        if int(d[key]) < 1:
            raise ConfigError(f"DARTS.{key} must be >= 1, got {d[key]}")
    if float(d.AUXILIARY_WEIGHT) < 0 or not 0 <= float(d.DROP_PATH_PROB) < 1:
        raise ConfigError(f"DARTS.AUXILIARY_WEIGHT must be >= 0 and DARTS.DROP_PATH_PROB in [0, 1); got "
                          f"{d.AUXILIARY_WEIGHT} and {d.DROP_PATH_PROB}")
    size, aux_size = int(cfg.DATASET.IMAGE_SIZE), DARTS_NETWORKS[str(d.NETWORK)][1]
    if d.AUXILIARY and size != aux_size:
        raise ConfigError(f"the auxiliary head of DARTS.NETWORK {d.NETWORK} is built for {aux_size} px images: set "
                          f"DATASET.IMAGE_SIZE {aux_size} (got {size}), or DARTS.AUXILIARY False")
    try:
        genotype = resolve_genotype(str(d.GENOTYPE))
    except GenotypeError as err:
        raise ConfigError(f"DARTS.GENOTYPE: {err}") from None
    return ChildSpec(genotype, size, -1, f"genotype {d.GENOTYPE}", method="pdarts")


def resolve_child(cfg: CfgNode) -> ChildSpec:
    """For METHOD 'pdarts' the genotype of ``DARTS.GENOTYPE`` (checked with the other DARTS keys).
    Otherwise a released ``NET.SELECTION``, or ``SELECTION -1`` with ``NET.INPUT_ARCH`` or
    ``NET.BOARD_JSON``. Released nets run at their published size unless
    ``DATASET.SELECTION_IMAGE_SIZE`` is False; other paths, and a ``NET.MODEL``, at
    ``DATASET.IMAGE_SIZE``. METHOD spos: see ``lib.engine.spos.spos_child_arch``, at
    ``DATASET.IMAGE_SIZE``."""
    if str(cfg.METHOD) == "pdarts":
        return _resolve_darts_child(cfg)
    if str(cfg.METHOD) == "spos":
        arch, source = spos_child_arch(cfg)
        return ChildSpec(list(arch), int(cfg.DATASET.IMAGE_SIZE), -1, source, method="spos")
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
        if board or input_arch or cfg.NET.EXACT_ARCH:
            raise ConfigError(f"NET.SELECTION {selection} conflicts with NET.INPUT_ARCH/"
                              "NET.BOARD_JSON/NET.EXACT_ARCH: set NET.SELECTION -1 to use a searched "
                              "path (the released nets are built as published)")
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
                         search_cost=(float(entry["flops"]), float(entry["params"])) if counted else None,
                         exact=True)
    if not input_arch:
        raise ConfigError("NET.SELECTION -1 needs NET.INPUT_ARCH (e.g. "
                          f"\"{CREAM_ARCHS[14].arch_list()}\") or NET.BOARD_JSON")
    try:
        arch = validate_arch(input_arch)
    except ValueError as err:
        raise ConfigError(f"NET.INPUT_ARCH: {err}") from None
    return ChildSpec(arch, size, -1, "NET.INPUT_ARCH", exact=bool(cfg.NET.EXACT_ARCH))


def _named_model(model: str, board: str, input_arch: list, size: int) -> ChildSpec:
    try:
        model_entrypoint(model)  # an unknown name's message suggests the closest registered ones
    except ValueError as err:
        raise ConfigError(f"NET.MODEL: {err}") from None
    if board or input_arch:
        raise ConfigError(f"NET.MODEL {model!r} conflicts with NET.INPUT_ARCH/NET.BOARD_JSON: "
                          "set NET.MODEL '' to retrain or test a Cream path")
    return ChildSpec(None, size, -1, f"model {model}", model=model)


def checkpoint_misfit(what: str, spec: ChildSpec, err: CheckpointMismatchError, hint: str = "") -> RunError:
    """The RunError for weights ``what`` that do not fit ``spec``'s network: the first problem of
    ``err`` (a CheckpointMismatchError) and the keys to fix; ``hint`` follows ``what``."""
    return RunError(f"{what} does not fit {spec.source}{hint}: {err.first_problem} ... Set "
                    f"{spec.keys} and DATASET.NUM_CLASSES to the ones it was trained with")


def create_child_model(cfg: CfgNode, spec: ChildSpec) -> paddle.nn.Layer:
    """The child network with the config's classes: Cream's (``NET.EXACT_ARCH``: every listed
    choice) or a ``NET.MODEL`` with its dropout and pooling, SPOS's with its dropout (it pools by
    average), a DARTS network with ``DARTS.INIT_CHANNELS``, ``LAYERS`` and ``AUXILIARY``."""
    num_classes = int(cfg.DATASET.NUM_CLASSES)
    if spec.method == "pdarts":
        d = cfg.DARTS
        network = DARTS_NETWORKS[str(d.NETWORK)][0]
        with paddle.utils.unique_name.guard():  # stable parameter names: optimizer state resumes
            return network(int(d.INIT_CHANNELS), num_classes, int(d.LAYERS), bool(d.AUXILIARY), spec.arch)
    if spec.method == "spos":
        return build_spos_childnet(spec.arch, num_classes=num_classes,
                                   drop_rate=float(cfg.NET.DROPOUT_RATE), widths=spos_widths(cfg))
    options = dict(num_classes=num_classes, drop_rate=float(cfg.NET.DROPOUT_RATE), global_pool=str(cfg.NET.GP))
    if not spec.model:
        return build_childnet(spec.arch, zero_classifier=bool(cfg.NET.ZERO_INIT_CLASSIFIER), exact=spec.exact,
                              **options)
    try:
        return create_model(spec.model, **options)
    except ValueError as err:  # e.g. a pooling the network does not have
        raise ConfigError(f"NET.MODEL {spec.model!r}: {err} (check NET.GP, NET.DROPOUT_RATE, "
                          "DATASET.NUM_CLASSES)") from None


def child_cost(model: paddle.nn.Layer, spec: ChildSpec) -> Dict[str, Any]:
    """What the network costs (thop multiply-adds; parameters without an auxiliary head, which
    only trains, as the papers count them): ``mflops`` at its image size, ``params_m``,
    ``aux_params_m`` when there is an auxiliary head; for a Cream child net ``mflops_224`` at
    224 px (the size a search's FLOPs budget refers to) and, for a board path, the search's own
    count (``search_mflops``, ``search_params_m``: the FLOPs table's, by which the budget was
    applied); ``text``: all of it in one phrase."""
    macs, params = profile(model, (1, 3, spec.image_size, spec.image_size))
    aux = getattr(model, "auxiliary_head", None)
    cost: Dict[str, Any] = {"mflops": macs / 1e6}
    text = f"{cost['mflops']:.1f} MFLOPs at {spec.image_size} px"
    if spec.method == "cream" and not spec.model:
        cost["mflops_224"] = cost["mflops"]
        if spec.image_size != SEARCH_RESOLUTION:
            cost["mflops_224"] = profile(model, (1, 3, SEARCH_RESOLUTION, SEARCH_RESOLUTION))[0] / 1e6
            text += f" ({cost['mflops_224']:.1f} at {SEARCH_RESOLUTION} px)"
    if aux is not None:
        cost["aux_params_m"] = count_parameters(aux) / 1e6
        params -= count_parameters(aux)
    cost["params_m"] = params / 1e6
    params_text = f"{cost['params_m']:.2f}" if cost["params_m"] >= 0.1 else f"{cost['params_m']:.3f}"
    text += f", {params_text} M params" + (" (without the auxiliary head)" if aux is not None else "")
    if spec.search_cost is not None:
        cost["search_mflops"], cost["search_params_m"] = spec.search_cost
        text += f" (the search's count: {spec.search_cost[0]:.1f} MFLOPs, {spec.search_cost[1]:.2f} M params)"
    cost["text"] = text
    return cost


def _raise_drop_path(final: float) -> Callable[[paddle.nn.Layer, int, int], Dict[str, float]]:
    def start_epoch(model: paddle.nn.Layer, epoch: int, num_epochs: int) -> Dict[str, float]:
        # the official schedule: linear from 0 in the first epoch towards ``final`` at the end
        model.drop_path_prob = final * epoch / num_epochs
        return {"drop_path_prob": model.drop_path_prob}

    return start_epoch


def child_training(cfg: CfgNode, spec: ChildSpec) -> ChildTraining:
    """The retrain loop's additions for ``spec``'s network: for a DARTS network the auxiliary
    head's loss weight (``DARTS.AUXILIARY_WEIGHT``, with ``DARTS.AUXILIARY``) and the drop-path
    rate raised linearly to ``DARTS.DROP_PATH_PROB``; nothing for Cream's."""
    if spec.method != "pdarts":
        return ChildTraining()
    d = cfg.DARTS
    return ChildTraining(aux_weight=float(d.AUXILIARY_WEIGHT) if d.AUXILIARY else 0.0,
                         start_epoch=_raise_drop_path(float(d.DROP_PATH_PROB)))


def eval_interpolation(cfg: CfgNode, spec: ChildSpec) -> str:
    """``DATASET.EVAL_INTERPOLATION``, or when empty the network's own: bicubic for Cream's child
    nets (the reference's retrain and test), ``DATASET.INTERPOLATION`` for a ``NET.MODEL`` and for
    METHOD spos and pdarts (their official evaluations resize bilinearly, SPOS's with OpenCV)."""
    return _eval_interpolation_source(cfg, spec)[0]


def _eval_interpolation_source(cfg: CfgNode, spec: ChildSpec) -> Tuple[str, str]:
    """:func:`eval_interpolation` and the config key a user changes it with."""
    chosen = str(cfg.DATASET.EVAL_INTERPOLATION or "")
    if chosen:
        return chosen, "DATASET.EVAL_INTERPOLATION"
    if spec.model or spec.method != "cream":
        return str(cfg.DATASET.INTERPOLATION), "DATASET.INTERPOLATION"
    return EVAL_INTERPOLATION, "DATASET.EVAL_INTERPOLATION"


def child_loader_policy(cfg: CfgNode, spec: Optional[ChildSpec] = None) -> LoaderPolicy:
    """A child network's loaders (retrain, test): RandAugment ``AUGMENTATION.AA`` on training
    images, :func:`eval_interpolation` for the evaluation resize (of ``spec``, by default the
    network ``resolve_child(cfg)`` names)."""
    spec = spec if spec is not None else resolve_child(cfg)
    interpolation, key = _eval_interpolation_source(cfg, spec)
    return LoaderPolicy(auto_augment=str(cfg.AUGMENTATION.AA) or None,
                        eval_interpolation=interpolation, eval_interpolation_key=key)


def child_eval_preprocess(cfg: CfgNode, spec: ChildSpec) -> Dict[str, Any]:
    """The evaluation transform of ``retrain``/``test`` as an export records it
    (``pimm.deploy.eval_preprocess``): ``spec.image_size``, :func:`eval_interpolation`,
    ``DATASET.CROP_PCT`` and the DATASET normalisation keys."""
    return eval_preprocess(spec.image_size, interpolation=eval_interpolation(cfg, spec),
                           crop_pct=float(cfg.DATASET.CROP_PCT), **pixel_normalization(cfg))
