"""Evaluation: the child network a config describes, the distributed-safe evaluation loop, and the
``test`` mode (evaluate a released or retrained checkpoint on ``DATA_DIR/val``)."""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import paddle
import paddle.distributed as dist
import paddle.nn.functional as F
from tqdm import tqdm
from yacs.config import CfgNode

from lib.config import ConfigError
from lib.deploy import TEST_BACKENDS, select_test_model
from lib.engine.common import RunContext, RunError, build_loaders
from lib.models import CREAM_ARCHS, build_childnet, resolve_arch, validate_arch
from pimm.models import CheckpointMismatchError, load_model_weights, load_state_dict
from pimm.models import read_checkpoint_file
from pimm.utils import atomic_write_text, get_num_threads

__all__ = ["ChildSpec", "resolve_child", "create_child_model", "arch_from_board", "topk_correct",
           "evaluate", "metrics_from_sums", "test_checkpoint_path", "load_weights_for_test", "run"]

EVAL_METRIC_NAMES = ("loss", "prec1", "prec5")


@dataclass(frozen=True)
class ChildSpec:
    """The child network a config asks for."""

    arch: List[List[int]]
    image_size: int
    selection: int  # -1 for an explicit arch list or a board path
    source: str  # where the arch came from, for logs and metrics.json


def arch_from_board(path: str) -> List[List[int]]:
    """The best path of a search's ``board.json`` whose FLOPs lie in the board's own
    ``[flops_minimum, flops_maximum]``: ``best_in_range`` when present, else the first such
    entry of ``paths`` (the board lists them best first)."""
    try:
        with open(path, encoding="utf-8") as f:
            board = json.load(f)
    except FileNotFoundError:
        raise RunError(f"NET.BOARD_JSON: no file at {path}; point it at the board.json a search "
                       "wrote into its run folder") from None
    except (OSError, ValueError) as err:
        raise RunError(f"NET.BOARD_JSON: cannot read {path} as JSON ({err})") from err
    best = board.get("best_in_range") if isinstance(board, dict) else None
    if isinstance(best, dict) and best.get("arch"):
        return validate_arch(best["arch"])
    paths = board.get("paths") if isinstance(board, dict) else None
    if not isinstance(paths, list):
        raise RunError(f"NET.BOARD_JSON: {path} has no 'paths' list; it is not a Cream board.json")
    low = float(board.get("flops_minimum", -math.inf))
    high = float(board.get("flops_maximum", math.inf))
    for entry in paths:
        flops = entry.get("flops")
        if entry.get("arch") and (flops is None or low <= float(flops) <= high):
            return validate_arch(entry["arch"])
    raise RunError(f"NET.BOARD_JSON: no path in {path} lies within its FLOPs range "
                   f"[{low}, {high}]; give the path you want as NET.SELECTION -1 with "
                   "NET.INPUT_ARCH")


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
    """The child network with the config's classes, dropout and pooling."""
    return build_childnet(spec.arch, num_classes=int(cfg.DATASET.NUM_CLASSES),
                          drop_rate=float(cfg.NET.DROPOUT_RATE), global_pool=str(cfg.NET.GP))


def topk_correct(output: paddle.Tensor, target: paddle.Tensor,
                 ks: Sequence[int] = (1, 5)) -> List[paddle.Tensor]:
    """Number of samples whose label is among the top-k logits, for each k (device tensors;
    k above the class count counts every sample)."""
    maxk = min(max(ks), output.shape[1])
    _, pred = paddle.topk(output, k=maxk, axis=1)
    hits = (pred == target.reshape([-1, 1]).astype(pred.dtype)).astype("float64")
    return [hits[:, :min(k, maxk)].sum() for k in ks]


def _valid_samples_on_rank(loader: Any) -> int:
    # The sharded sampler pads every shard to the same length by wrapping around; rank r reads
    # positions r, r + n, r + 2n, ... of the padded order, so its real samples form a prefix.
    sampler = loader.batch_sampler
    return len(range(sampler.local_rank, len(loader.dataset), sampler.nranks))


def _reduced(totals: paddle.Tensor, ctx: RunContext) -> List[float]:
    if ctx.distributed:
        totals = totals.clone()
        dist.all_reduce(totals)
    return totals.numpy().tolist()


def metrics_from_sums(loss_sum: float, top1: float, top5: float, count: float) -> Dict[str, float]:
    """Mean loss and Prec@1/Prec@5 (%) from summed loss, hit counts and the sample count (NaN
    when there are no samples)."""
    if count <= 0:
        return OrderedDict(loss=math.nan, prec1=math.nan, prec5=math.nan)
    return OrderedDict(loss=loss_sum / count, prec1=100.0 * top1 / count,
                       prec5=100.0 * top5 / count)


@paddle.no_grad()
def evaluate(model: paddle.nn.Layer, loader: Any, ctx: RunContext, log_name: str = "Test",
             progress_bar: bool = False) -> Dict[str, float]:
    """Loss, Prec@1 and Prec@5 (%) of ``model`` over ``loader``'s whole dataset, plus ``images``
    and ``seconds``.

    Distributed: each rank evaluates its shard, the padded duplicates at the end of a shard are
    left out, and sums (loss, hits, counts) are reduced over the ranks, so the result equals a
    one-process evaluation. Numbers reach the host only every ``LOG_INTERVAL`` batches (and at
    the end); then a tqdm bar (``progress_bar`` on a terminal) or a log line shows them.
    """
    model.eval()
    valid_left = _valid_samples_on_rank(loader)
    log_interval = max(1, int(ctx.cfg.LOG_INTERVAL))
    totals = paddle.zeros([4], dtype="float64")  # loss sum, top-1 hits, top-5 hits, images
    show_bar = progress_bar and ctx.is_primary and sys.stderr.isatty()
    bar = tqdm(total=len(loader), desc=log_name, disable=not show_bar, dynamic_ncols=True)
    last_idx = len(loader) - 1
    start = time.time()
    for batch_idx, (images, labels) in enumerate(loader):
        keep = min(valid_left, images.shape[0])
        valid_left -= keep
        if keep > 0:
            if keep < images.shape[0]:
                images, labels = images[:keep], labels[:keep]
            output = model(images)
            loss_sum = F.cross_entropy(output, labels, reduction="sum").astype("float64")
            top1, top5 = topk_correct(output, labels)
            totals += paddle.stack([loss_sum.reshape([]), top1, top5,
                                    paddle.to_tensor(float(keep), dtype="float64")])
        bar.update(1)
        if batch_idx % log_interval == 0 or batch_idx == last_idx:
            metrics = metrics_from_sums(*_reduced(totals, ctx))
            if show_bar:
                bar.set_postfix(prec1=f"{metrics['prec1']:.3f}", prec5=f"{metrics['prec5']:.3f}")
            else:
                ctx.logger.info("%s: [%4d/%d]  Loss: %.4f  Prec@1: %.4f  Prec@5: %.4f",
                                log_name, batch_idx, last_idx, metrics["loss"], metrics["prec1"],
                                metrics["prec5"])
    bar.close()
    loss_sum, top1, top5, count = _reduced(totals, ctx)
    result = metrics_from_sums(loss_sum, top1, top5, count)
    result["images"] = int(round(count))
    result["seconds"] = time.time() - start
    return result


# ---- test mode ---------------------------------------------------------------------------------
def _trained_selection(checkpoint: Any) -> Optional[Any]:
    args = checkpoint.get("args") if isinstance(checkpoint, dict) else None
    net = args.get("NET") if isinstance(args, dict) else None
    return net.get("SELECTION") if isinstance(net, dict) else None


def test_checkpoint_path(cfg: CfgNode) -> str:
    """``RESUME_PATH``, the checkpoint the test evaluates; raises when it is unset or missing."""
    path = str(cfg.RESUME_PATH or "")
    if not path:
        raise ConfigError("test needs RESUME_PATH: the checkpoint (.pdparams or .pth.tar) to "
                          "evaluate")
    if not os.path.isfile(path):
        raise RunError(f"RESUME_PATH: no checkpoint at {path!r}; set it to the .pdparams or "
                       ".pth.tar file to evaluate")
    return path


def load_weights_for_test(model: paddle.nn.Layer, path: str, spec: ChildSpec,
                          use_ema: bool) -> str:
    """Load a ``.pdparams`` or released PyTorch checkpoint into ``model``: the EMA weights when
    ``use_ema`` and the file has them, else ``state_dict``. Returns which ones were used."""
    try:
        checkpoint = read_checkpoint_file(path)
        has_ema = isinstance(checkpoint, dict) and bool(checkpoint.get("state_dict_ema"))
        weights = "state_dict_ema" if use_ema and has_ema else "state_dict"
        load_model_weights(model, load_state_dict(path, use_ema=use_ema and has_ema),
                           source=f"checkpoint {path}")
    except CheckpointMismatchError as err:
        trained = _trained_selection(checkpoint)
        hint = f" (it was trained with NET.SELECTION {trained})" if trained is not None else ""
        first_problem = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise RunError(f"checkpoint {path} does not fit {spec.source}{hint}: {first_problem} ... "
                       "Set NET.SELECTION (or NET.INPUT_ARCH) and DATASET.NUM_CLASSES to the ones "
                       "the checkpoint was trained with") from err
    except ValueError as err:
        raise RunError(f"cannot use checkpoint {path}: {err}") from err
    return weights


def run(ctx: RunContext) -> Dict[str, Any]:
    """``test`` mode: evaluate ``RESUME_PATH`` on ``DATA_DIR/val``; writes ``metrics.json``."""
    cfg = ctx.cfg
    spec = resolve_child(cfg)
    _, loader = build_loaders(cfg, ctx, spec.image_size, train=False, eval=True)
    path = test_checkpoint_path(cfg)
    model = create_child_model(cfg, spec)
    weights = load_weights_for_test(model, path, spec, use_ema=bool(cfg.NET.EMA.USE))
    ctx.logger.info("testing %s (%s, %d px) from %s [%s] on %d images of %s", spec.source,
                    spec.arch, spec.image_size, path, weights, len(loader.dataset),
                    os.path.join(str(cfg.DATA_DIR), "val"))
    log_name = "Test_EMA" if weights == "state_dict_ema" else "Test"
    backend = str(cfg.TEST.INFERENCE)
    if backend not in TEST_BACKENDS:
        raise ConfigError(f"TEST.INFERENCE {backend!r} is not one of {', '.join(TEST_BACKENDS)}")
    with tempfile.TemporaryDirectory(prefix="cream_test_") as workdir:
        eval_model, backend = select_test_model(model, spec.image_size, backend, workdir,
                                                num_images=len(loader.dataset), logger=ctx.logger,
                                                threads=get_num_threads())
        result = evaluate(eval_model, loader, ctx, log_name=log_name, progress_bar=True)
    metrics = OrderedDict(
        top1=result["prec1"], top5=result["prec5"], loss=result["loss"], images=result["images"],
        seconds=result["seconds"], backend=backend, checkpoint=os.path.abspath(path),
        weights=weights,
        selection=spec.selection, arch=spec.arch, image_size=spec.image_size,
        processes=ctx.world_size)
    if spec.selection in CREAM_ARCHS:
        entry = CREAM_ARCHS[spec.selection]
        metrics["published_top1"], metrics["published_top5"] = entry.top1, entry.top5
    ctx.logger.info("* Prec@1 %.3f  Prec@5 %.3f  Loss %.4f  (%d images, %.1f s)", metrics["top1"],
                    metrics["top5"], metrics["loss"], metrics["images"], metrics["seconds"])
    if ctx.is_primary:
        atomic_write_text(json.dumps(metrics, indent=2), os.path.join(ctx.run_dir, "metrics.json"))
        for name in EVAL_METRIC_NAMES:
            ctx.writer.add_scalar(f"test/{name}", result[name], 0)
    return dict(metrics)
