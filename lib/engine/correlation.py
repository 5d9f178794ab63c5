"""``correlation`` mode: how well a supernet ranks paths, the analysis of Cream's paper.

Each path is evaluated with the weights it inherits from the supernet (its batch norms recalibrated
on ``CORRELATION.BN_BATCHES`` training batches, as the search validates paths) on ``DATA_DIR/val``,
and compared with the accuracy of the same path trained alone: Kendall's tau, Spearman's rho and
Pearson's r between the two, a scatter plot and a CSV.

Two steps (README, "How well does the supernet rank paths?"):

1. without stand-alone accuracies, the mode picks the paths (``CORRELATION.PATHS``: random ones
   inside the FLOPs range, or a board's), evaluates them and writes ``retrain_paths.sh``, one
   ``retrain`` command per path (with ``NET.EXACT_ARCH True``: the network the supernet ran);
2. with them (``CORRELATION.RUNS``: those runs' folders, or ``CORRELATION.CSV``), it evaluates the
   paths they trained and reports the coefficients.

Outputs in the run folder: ``correlation.csv`` (per path: arch, MFLOPs, inherited top-1/top-5/loss,
stand-alone top-1 and where it came from), ``correlation.json`` (the coefficients), ``correlation.png``
(matplotlib installed), ``retrain_paths.sh`` (step 1), TensorBoard scalars.
"""
from __future__ import annotations

import ast
import csv
import glob
import io
import json
import math
import os
import shlex
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from yacs.config import CfgNode

from lib.config import ConfigError, load_config
from lib.engine.child import resolve_child
from lib.engine.common import RunContext, RunError, build_loaders, check_data_splits
from lib.engine.search import build_search_supernet
from lib.engine.supernet import evaluate_path, search_loader_policy
from lib.models import FlopsEst, SuperNet, effective_arch, validate_arch
from lib.search import PathSampler
from lib.search.board_file import board_paths
from pimm.models import (CheckpointMismatchError, load_model_weights, read_checkpoint_file, select_state_dict,
                         weights_entry)
from pimm.utils import SUMMARY_FILE, atomic_write_text
from pimm.utils.correlation import rank_correlations
from pimm.utils.plots import PLOT_HINT, save_scatter_plot

__all__ = ["PATH_SOURCES", "SUPERNET_KEYS", "StandAlone", "CorrelationOptions", "supernet_config",
           "read_standalone_run", "read_standalone_csv", "random_paths", "preflight", "run"]

ArchList = List[List[int]]

#: CORRELATION.PATHS
PATH_SOURCES = ("random", "board")
#: the keys that shape the supernet and its inputs, taken from the checkpoint's run config
SUPERNET_KEYS = ("SUPERNET.FLOPS_MINIMUM", "SUPERNET.FLOPS_MAXIMUM", "SUPERNET.SLICE", "SUPERNET.RESUNIT",
                 "SUPERNET.DIL_CONV", "DATASET.NUM_CLASSES", "DATASET.IMAGE_SIZE", "NET.GP",
                 "NET.DROPOUT_RATE", "BATCHNORM.BN_MOMENTUM", "BATCHNORM.BN_EPS")
_MAX_DRAWS_PER_PATH = 1000  # random paths: draws before giving up on a narrow FLOPs range


@dataclass(frozen=True)
class StandAlone:
    """The accuracy of a path trained alone, and where it was read."""

    arch: ArchList
    top1: float
    source: str
    image_size: Optional[int] = None


@dataclass(frozen=True)
class CorrelationOptions:
    """``cfg.CORRELATION``, checked."""

    checkpoint: str
    runs: Tuple[str, ...]
    csv: str
    paths: str
    num_paths: int
    board_json: str
    bn_batches: int
    retrain_config: str

    @classmethod
    def from_config(cls, cfg: CfgNode) -> "CorrelationOptions":
        c = cfg.CORRELATION
        opts = cls(checkpoint=str(c.CHECKPOINT or ""), runs=tuple(str(r) for r in c.RUNS), csv=str(c.CSV or ""),
                   paths=str(c.PATHS), num_paths=int(c.NUM_PATHS), board_json=str(c.BOARD_JSON or ""),
                   bn_batches=int(c.BN_BATCHES), retrain_config=str(c.RETRAIN_CONFIG))
        problems = []
        if not opts.checkpoint:
            problems.append("CORRELATION.CHECKPOINT must name the supernet checkpoint (a search's "
                            "last.pdparams or model_best.pdparams)")
        if opts.runs and opts.csv:
            problems.append("CORRELATION.RUNS and CORRELATION.CSV are both set: keep one source of "
                            "stand-alone accuracies")
        if opts.paths not in PATH_SOURCES:
            problems.append(f"CORRELATION.PATHS must be one of {PATH_SOURCES}, got {opts.paths!r}")
        if opts.paths == "board" and not opts.board_json and not opts.standalone:
            problems.append("CORRELATION.PATHS 'board' needs CORRELATION.BOARD_JSON (a search's board.json)")
        if opts.num_paths < 2:
            problems.append(f"CORRELATION.NUM_PATHS must be >= 2, got {opts.num_paths}")
        if opts.bn_batches < 0:
            problems.append(f"CORRELATION.BN_BATCHES must be >= 0, got {opts.bn_batches}")
        if problems:
            raise ConfigError("; ".join(problems))
        return opts

    @property
    def standalone(self) -> bool:
        return bool(self.runs or self.csv)


# ---- the supernet -------------------------------------------------------------------------------
def supernet_config(cfg: CfgNode, args: Any) -> CfgNode:
    """``cfg`` with :data:`SUPERNET_KEYS` taken from ``args``, the run config a checkpoint stores
    (a nested dict), where it has them."""
    merged = cfg.clone()
    merged.defrost()
    for key in SUPERNET_KEYS:
        section, name = key.split(".")
        stored = args.get(section, {}).get(name) if isinstance(args, dict) else None
        if stored is not None:
            current = merged[section][name]
            merged[section][name] = type(current)(stored)
    merged.freeze()
    return merged


def _load_supernet(cfg: CfgNode, path: str, logger) -> Tuple[SuperNet, List[int], int, CfgNode]:
    if not os.path.isfile(path):
        raise RunError(f"CORRELATION.CHECKPOINT: no file at {path!r}; set it to a search's "
                       "last.pdparams or model_best.pdparams")
    try:
        checkpoint = read_checkpoint_file(path)
    except ValueError as err:
        raise RunError(f"cannot use checkpoint {path}: {err}") from err
    args = checkpoint.get("args") if isinstance(checkpoint, dict) else None
    net_cfg = supernet_config(cfg, args)
    if args is None:
        logger.warning("%s stores no run config: the supernet is built from this config's SUPERNET, "
                       "DATASET and NET keys", path)
    supernet, sta_num, resolution = build_search_supernet(net_cfg)
    weights = weights_entry(checkpoint, bool(cfg.NET.EMA.USE)) or "state_dict"
    try:  # the file is read once: its weights come from the checkpoint already in memory
        state_dict = select_state_dict(checkpoint, path, use_ema=weights.endswith("_ema"))
        load_model_weights(supernet, state_dict, source=f"checkpoint {path}")
    except CheckpointMismatchError as err:
        raise RunError(f"checkpoint {path} does not fit the supernet of FLOPs range "
                       f"[{net_cfg.SUPERNET.FLOPS_MINIMUM}, {net_cfg.SUPERNET.FLOPS_MAXIMUM}] with "
                       f"{net_cfg.DATASET.NUM_CLASSES} classes: {err.first_problem}") from err
    logger.info("supernet from %s [%s]: FLOPs range [%s, %s], layers per searched stage %s, %d classes, "
                "%d px", path, weights, net_cfg.SUPERNET.FLOPS_MINIMUM,
                net_cfg.SUPERNET.FLOPS_MAXIMUM, sta_num, net_cfg.DATASET.NUM_CLASSES, net_cfg.DATASET.IMAGE_SIZE)
    return supernet, sta_num, resolution, net_cfg


# ---- stand-alone accuracies ---------------------------------------------------------------------
def _best_summary_top1(path: str) -> float:
    """The best validation top-1 of a run's ``summary.csv`` (of the plain or the EMA weights)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    values = [float(row[key]) for row in rows for key in ("eval_prec1", "eval_ema_prec1")
              if row.get(key) not in (None, "")]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        raise RunError(f"{path} has no eval_prec1 values: the run has not finished an epoch")
    return max(values)


def read_standalone_run(folder: str) -> StandAlone:
    """The path a retrain (or test) run trained and its accuracy: the arch from the run's
    ``config.yaml``, the top-1 from ``metrics.json`` (test) or the best of ``summary.csv`` (retrain).
    Raises RunError when the run built another network than the path (a single-layer stage built
    from its template: retrain with ``NET.EXACT_ARCH True``)."""
    config = os.path.join(folder, "config.yaml")
    if not os.path.isfile(config):
        raise RunError(f"CORRELATION.RUNS: {folder} has no config.yaml; it is not a run folder of "
                       "tools/main.py retrain or test")
    try:
        run_cfg = load_config(config)
        spec = resolve_child(run_cfg)
    except (ConfigError, RunError) as err:
        raise RunError(f"CORRELATION.RUNS: cannot tell which path {folder} trained: {err}") from err
    built = effective_arch(spec.arch, exact=spec.exact)
    if built != spec.arch:
        raise RunError(f"CORRELATION.RUNS: {folder} trained {built}, not the path {spec.arch}: stages "
                       "with a single layer were built from their template block. Retrain the path "
                       "with NET.EXACT_ARCH True")
    metrics = os.path.join(folder, "metrics.json")
    summary = os.path.join(folder, SUMMARY_FILE)
    if not (os.path.isfile(metrics) or os.path.isfile(summary)):
        raise RunError(f"CORRELATION.RUNS: {folder} has neither summary.csv nor metrics.json: the run "
                       "has not finished an epoch")
    try:
        if os.path.isfile(metrics):
            with open(metrics) as f:
                top1 = float(json.load(f)["top1"])
        else:
            top1 = _best_summary_top1(summary)
    except (OSError, ValueError, KeyError, TypeError) as err:  # a damaged or foreign file
        raise RunError(f"CORRELATION.RUNS: cannot read the top-1 of {folder}: {err!r}") from err
    return StandAlone(spec.arch, top1, folder, spec.image_size)


def read_standalone_csv(path: str) -> List[StandAlone]:
    """Stand-alone accuracies from a CSV with the columns ``arch`` (an arch list) and ``top1``."""
    if not os.path.isfile(path):
        raise RunError(f"CORRELATION.CSV: no file at {path!r}")
    results = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not {"arch", "top1"} <= set(reader.fieldnames or ()):
            raise RunError(f"CORRELATION.CSV: {path} needs the columns arch and top1, has {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                arch = validate_arch(ast.literal_eval(row["arch"]))
                top1 = float(row["top1"])
            except (ValueError, SyntaxError, TypeError) as err:
                raise RunError(f"CORRELATION.CSV: {path}, line {line}: {err}") from err
            results.append(StandAlone(arch, top1, f"{path}:{line}"))
    return results


def _run_folders(patterns: Sequence[str]) -> List[str]:
    folders: List[str] = []
    for pattern in patterns:
        found = sorted(p for p in glob.glob(pattern) if os.path.isdir(p))
        if not found:
            raise RunError(f"CORRELATION.RUNS: no run folder matches {pattern!r}")
        folders += [p for p in found if p not in folders]
    return folders


def _standalone(opts: CorrelationOptions) -> List[StandAlone]:
    results = (read_standalone_csv(opts.csv) if opts.csv
               else [read_standalone_run(folder) for folder in _run_folders(opts.runs)])
    seen: Dict[str, str] = {}
    for result in results:
        key = str(result.arch)
        if key in seen:
            raise RunError(f"the path {result.arch} has two stand-alone accuracies ({seen[key]} and "
                           f"{result.source}): keep one")
        seen[key] = result.source
    if len(results) < 2:
        raise RunError(f"a correlation needs at least 2 paths with stand-alone accuracies, got {len(results)}")
    return results


# ---- paths --------------------------------------------------------------------------------------
def random_paths(sta_num: Sequence[int], num_choices: int, count: int, flops_of, low: float, high: float,
                 seed: int) -> List[ArchList]:
    """``count`` distinct uniformly drawn paths whose FLOPs (``flops_of(arch)``) lie in ``[low, high]``."""
    sampler = PathSampler(sta_num, num_choices, "even", seed=seed)
    paths: List[ArchList] = []
    for _ in range(count * _MAX_DRAWS_PER_PATH):
        arch = sampler.sample()
        if arch not in paths and low <= flops_of(arch) <= high:
            paths.append(arch)
            if len(paths) == count:
                return paths
    raise RunError(f"found only {len(paths)} distinct paths within [{low}, {high}] MFLOPs in "
                   f"{count * _MAX_DRAWS_PER_PATH} draws: lower CORRELATION.NUM_PATHS")


def _check_paths(supernet: SuperNet, paths: Sequence[ArchList], sources: Sequence[str]) -> None:
    for arch, source in zip(paths, sources):
        try:
            supernet.chosen_blocks(arch)
        except ValueError as err:
            raise RunError(f"{source}: the path {arch} is not one of this supernet's: {err}") from err


# ---- outputs ------------------------------------------------------------------------------------
def _csv_text(rows: List[Dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _retrain_script(ctx: RunContext, opts: CorrelationOptions, net_cfg: CfgNode, paths: Sequence[ArchList]) -> str:
    """``retrain_paths.sh``: one retrain command per path, each in its own run folder."""
    prefix = f"{ctx.cfg.MODEL}_path_"
    lines = ["#!/bin/sh", f"# Each path of {ctx.run_dir}/correlation.csv trained alone (extra KEY VALUE",
             "# overrides go to every command). Then run the correlation again with",
             f"#   CORRELATION.RUNS \"['<SAVE_PATH of the retrain config>/{prefix}*']\"", "set -e"]
    for i, arch in enumerate(paths):
        command = ["python", "tools/main.py", "retrain", opts.retrain_config, "NET.SELECTION", "-1",
                   "NET.BOARD_JSON", "", "NET.INPUT_ARCH", str(arch), "NET.EXACT_ARCH", "True",
                   "DATA_DIR", str(ctx.cfg.DATA_DIR), "DATASET.NUM_CLASSES", str(net_cfg.DATASET.NUM_CLASSES),
                   "DATASET.IMAGE_SIZE", str(net_cfg.DATASET.IMAGE_SIZE), "MODEL", f"{prefix}{i:02d}"]
        lines.append(" ".join(shlex.quote(part) for part in command) + ' "$@"')
    return "\n".join(lines) + "\n"


def preflight(cfg: CfgNode) -> None:
    """The launcher's checks before starting the processes (see ``lib.engine``)."""
    CorrelationOptions.from_config(cfg)
    check_data_splits(cfg)


def run(ctx: RunContext) -> Dict[str, Any]:
    """Evaluate the paths with inherited weights; with stand-alone accuracies, the coefficients."""
    cfg, log = ctx.cfg, ctx.logger
    opts = CorrelationOptions.from_config(cfg)
    standalone = _standalone(opts) if opts.standalone else []
    supernet, sta_num, resolution, net_cfg = _load_supernet(cfg, opts.checkpoint, log)
    flops_est = FlopsEst(supernet, resolution=resolution)
    if standalone:
        paths, sources = [s.arch for s in standalone], [s.source for s in standalone]
        sizes = {s.image_size for s in standalone if s.image_size is not None} - {int(net_cfg.DATASET.IMAGE_SIZE)}
        if sizes:
            log.warning("stand-alone runs trained at %s px, the supernet at %d px", sorted(sizes),
                        int(net_cfg.DATASET.IMAGE_SIZE))
    elif opts.paths == "board":
        try:
            paths = board_paths(opts.board_json)
        except FileNotFoundError:
            raise RunError(f"CORRELATION.BOARD_JSON: no file at {opts.board_json}") from None
        except ValueError as err:
            raise RunError(f"CORRELATION.BOARD_JSON: {err}") from err
        sources = [opts.board_json] * len(paths)
    else:
        paths = random_paths(sta_num, len(supernet.blocks[1][0]), opts.num_paths, flops_est.get_flops,
                             float(net_cfg.SUPERNET.FLOPS_MINIMUM), float(net_cfg.SUPERNET.FLOPS_MAXIMUM),
                             seed=int(cfg.SEED))
        sources = ["random"] * len(paths)
    _check_paths(supernet, paths, sources)

    size = int(net_cfg.DATASET.IMAGE_SIZE)
    train_loader, eval_loader = build_loaders(net_cfg, ctx, size, policy=search_loader_policy(net_cfg),
                                              train=opts.bn_batches > 0)
    bn_batches: List[np.ndarray] = []
    if opts.bn_batches:
        for images, _ in train_loader:  # the same batches recalibrate every path
            bn_batches.append(images.numpy())
            if len(bn_batches) == opts.bn_batches:
                break
    log.info("evaluating %d paths on %d images of %s (batch norm recalibrated on %d training batches)",
             len(paths), len(eval_loader.dataset), os.path.join(str(cfg.DATA_DIR), "val"), len(bn_batches))
    rows: List[Dict[str, Any]] = []
    for i, arch in enumerate(paths):
        result = evaluate_path(supernet, arch, eval_loader, ctx, bn_batches, log_name=f"Path {i}")
        row = OrderedDict(path=i, arch=str(arch), mflops=round(flops_est.get_flops(arch), 3),
                          supernet_top1=result["prec1"], supernet_top5=result["prec5"],
                          supernet_loss=result["loss"],
                          standalone_top1=standalone[i].top1 if standalone else "",
                          standalone_source=standalone[i].source if standalone else "")
        rows.append(row)
        log.info("path %d/%d %s (%.1f MFLOPs): inherited top-1 %.2f%s", i + 1, len(paths), arch[1:-1],
                 row["mflops"], result["prec1"],
                 f", stand-alone top-1 {standalone[i].top1:.2f}" if standalone else "")
    summary: Dict[str, Any] = OrderedDict(checkpoint=os.path.abspath(opts.checkpoint), paths=len(paths),
                                          image_size=size, bn_batches=len(bn_batches))
    if not ctx.is_primary:
        return summary
    atomic_write_text(_csv_text(rows), os.path.join(ctx.run_dir, "correlation.csv"))
    if not standalone:
        script = os.path.join(ctx.run_dir, "retrain_paths.sh")
        atomic_write_text(_retrain_script(ctx, opts, net_cfg, paths), script)
        os.chmod(script, 0o755)
        log.info("no stand-alone accuracies yet (CORRELATION.RUNS / CORRELATION.CSV): %s trains each "
                 "path alone; correlation.csv lists the inherited accuracies", script)
        return summary
    inherited = [row["supernet_top1"] for row in rows]
    alone = [s.top1 for s in standalone]
    summary.update(rank_correlations(alone, inherited))
    atomic_write_text(json.dumps(summary, indent=1) + "\n", os.path.join(ctx.run_dir, "correlation.json"))
    for key in ("kendall_tau", "spearman_rho", "pearson_r"):
        if math.isfinite(summary[key]):
            ctx.writer.add_scalar(f"correlation/{key}", summary[key], 0)
    title = (f"{len(paths)} paths: Kendall tau {summary['kendall_tau']:.3f}, Spearman rho "
             f"{summary['spearman_rho']:.3f}, Pearson r {summary['pearson_r']:.3f}")
    plot = save_scatter_plot(os.path.join(ctx.run_dir, "correlation.png"), alone, inherited,
                             xlabel="top-1 trained alone (%)", ylabel="top-1 with supernet weights (%)",
                             title=title, labels=[str(i) for i in range(len(paths))])
    log.info("%s; %s", title, f"plot: {plot}" if plot else f"no plot: {PLOT_HINT}")
    return summary
