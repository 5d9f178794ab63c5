"""``evolve`` mode: SPOS's evolutionary search (``lib.spos.Evolution``) of a trained supernet under a
FLOPs limit. METHOD spos searches SPOS's ShuffleNetV2 supernet (a ``train`` run of METHOD spos, or
the official ``checkpoint-150000.pth.tar``); METHOD cream searches Cream's supernet (a Cream
search's checkpoint or a ``train/spos.yaml`` run, the SUPERNET.* keys as in that run), so Cream's
board can be compared with an evolution on the same supernet.

A candidate is scored by its top-1 accuracy on ``DATA_DIR/<SPOS.HOLDOUT_SPLIT>``, after its batch
norms were recalibrated on ``SPOS.BN_BATCHES`` training batches (``lib.engine.supernet``). After
every generation the run folder gets, atomically: ``evolution_state.json`` (everything needed to
continue), ``evolution.json`` (every scored path with its MFLOPs and score, each generation's
summary and top-k, the best path) and ``evolution.png`` (the best score per generation, with
matplotlib). A killed search resumes with the same command (AUTO_RESUME): it repeats the
generation it was in and then continues exactly as the uninterrupted search would have.
``tools/main.py retrain`` takes the best path (``SPOS.EVOLUTION_JSON``).

Deliberate differences from the official ``Search/search.py`` (besides those of ``lib.spos.evolution``):

* every candidate is recalibrated on the same training batches (the first ``SPOS.BN_BATCHES`` of a
  fixed epoch) and scored on the whole held-out split; the official draws the next batches of
  never-restarting iterators, so two candidates were judged on different images;
* the running statistics are recalibrated as a plain mean over the batches, not an exponential
  average from 0 / 1 (see ``recalibrated_batch_norm``);
* the search state is written after every generation (the official wrote it once, at the end).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
from paddle import nn

from lib.config import ConfigError
from lib.engine.common import (RunContext, RunError, build_loaders, check_data_splits, checkpoint_named_by,
                               data_split_dir, pixel_normalization, record_config)
from lib.engine.search import build_search_supernet
from lib.engine.spos import build_spos_supernet, spos_space, spos_widths
from lib.engine.supernet import evaluate_path, search_loader_policy
from lib.models import FlopsEst
from lib.spos import Evolution, EvolutionConfig, PathSpace, cream_path_space
from pimm.models import CheckpointMismatchError, load_checkpoint
from pimm.utils import atomic_write_text
from pimm.utils.plots import PLOT_HINT, plot_lines

__all__ = ["run", "preflight", "STATE_FILE", "RESULT_FILE", "PLOT_FILE", "evolution_config"]

STATE_FILE = "evolution_state.json"
RESULT_FILE = "evolution.json"
PLOT_FILE = "evolution.png"
_FILE_VERSION = 1


def evolution_config(cfg) -> EvolutionConfig:
    """``SPOS.EVOLUTION.*`` (FLOPS_LIMIT 0: none) with ``SEED``; ConfigError naming the problem."""
    e = cfg.SPOS.EVOLUTION
    try:
        return EvolutionConfig(population=int(e.POPULATION), top_k=int(e.TOP_K), mutations=int(e.MUTATIONS),
                               crossovers=int(e.CROSSOVERS), mutation_prob=float(e.MUTATION_PROB),
                               generations=int(e.GENERATIONS),
                               flops_limit=float(e.FLOPS_LIMIT) if float(e.FLOPS_LIMIT) > 0 else None,
                               seed=int(cfg.SEED))
    except ValueError as err:
        raise ConfigError(f"SPOS.EVOLUTION: {err}") from None


@dataclass
class _Supernet:
    """What the search needs of a method's supernet: the network, its path space (MFLOPs), how to
    describe a path in a log line, and the facts evolution.json records about it."""

    model: nn.Layer
    space: PathSpace
    describe: Callable[[Any], str]
    facts: Dict[str, Any]
    fit_keys: str  # the config keys that shape it, for a checkpoint that does not fit


def _spos_supernet(cfg) -> _Supernet:
    return _Supernet(build_spos_supernet(cfg), spos_space(cfg), lambda arch: str(list(arch)),
                     {"widths": spos_widths(cfg).record()},
                     "SPOS.STAGE_CHANNELS, SPOS.HEAD_CHANNELS and DATASET.NUM_CLASSES")


def _cream_supernet(cfg) -> _Supernet:
    model, sta_num, resolution = build_search_supernet(cfg)
    # MFLOPs at the resolution the space was sized for, as Cream's board counts them
    space = cream_path_space(sta_num, FlopsEst(model, resolution=int(resolution)).get_flops)
    return _Supernet(model, space, lambda arch: str(arch[1:-1]),
                     {"sta_num": list(sta_num), "flops_resolution": int(resolution),
                      "flops_range": [float(cfg.SUPERNET.FLOPS_MINIMUM), float(cfg.SUPERNET.FLOPS_MAXIMUM)]},
                     "SUPERNET.FLOPS_MINIMUM/FLOPS_MAXIMUM/SLICE/RESUNIT/DIL_CONV and DATASET.NUM_CLASSES")


_SUPERNETS = {"spos": _spos_supernet, "cream": _cream_supernet}


def _supernet_checkpoint(cfg) -> str:
    return checkpoint_named_by(cfg, "SPOS.SUPERNET", "evolve", "the trained supernet's checkpoint (the "
                               "last.pdparams of a train run, or the official .pth.tar)")


def _load_supernet(supernet: _Supernet, path: str, method: str) -> None:
    try:
        load_checkpoint(supernet.model, path, strict=True)
    except CheckpointMismatchError as err:
        raise RunError(f"SPOS.SUPERNET {path} does not fit the {method} supernet of this config "
                       f"({err.first_problem}): set {supernet.fit_keys} as in the run that "
                       "trained it") from err
    except (ValueError, OSError) as err:
        raise RunError(f"cannot use SPOS.SUPERNET {path}: {err}") from err


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _RecalibrationBatches:
    """The first ``count`` batches of the training loader at a fixed epoch, the same images and
    augmentation for every candidate (scores comparable, a resumed search identical). They stay in
    host memory when they fit in ``CACHE_BYTES``; otherwise they are read again per candidate."""

    CACHE_BYTES = 1 << 30

    def __init__(self, loader: Any, count: int) -> None:
        self.loader, self.count = loader, min(int(count), len(loader))
        self._cache: Optional[List[np.ndarray]] = None

    def __iter__(self) -> Iterator[Any]:
        if self._cache is not None:
            yield from self._cache
            return
        self.loader.set_epoch(0)
        kept: Optional[List[np.ndarray]] = []
        size = 0
        for index, (images, _) in enumerate(self.loader):
            if index >= self.count:
                break
            if kept is not None:
                size += int(np.prod(images.shape)) * 4
                if size <= self.CACHE_BYTES:
                    kept.append(images.numpy())
                else:
                    kept = None
            yield images
        if kept is not None and len(kept) == self.count:
            self._cache = kept


class _Search:
    """One evolve run: the supernet, loaders, the evolution and its files."""

    def __init__(self, ctx: RunContext) -> None:
        cfg = ctx.cfg
        self.ctx, self.cfg, self.method = ctx, cfg, str(cfg.METHOD)
        self.config = evolution_config(cfg)
        self.supernet = _SUPERNETS[self.method](cfg)
        self.checkpoint = _supernet_checkpoint(cfg)
        _load_supernet(self.supernet, self.checkpoint, self.method)
        self.holdout = str(cfg.SPOS.HOLDOUT_SPLIT)
        train_loader, self.holdout_loader = build_loaders(cfg, ctx, int(cfg.DATASET.IMAGE_SIZE),
                                                          policy=search_loader_policy(cfg),
                                                          eval_split=self.holdout)
        self.bn_batches = _RecalibrationBatches(train_loader, int(cfg.SPOS.BN_BATCHES))
        if self.bn_batches.count < int(cfg.SPOS.BN_BATCHES):
            ctx.logger.warning("DATA_DIR/train gives %d batches of %d per process, fewer than SPOS.BN_BATCHES "
                               "(%d): candidates are recalibrated on those", self.bn_batches.count,
                               int(cfg.DATASET.BATCH_SIZE), int(cfg.SPOS.BN_BATCHES))
        self.evolution = Evolution(self.supernet.space, self.config)
        # what a score depends on (JSON types: compared with a saved copy): a resumed search must
        # score the same way
        pixels = {k: list(v) if isinstance(v, tuple) else v for k, v in pixel_normalization(cfg).items()}
        self.scoring = {"method": self.method, "supernet_sha256": _file_digest(self.checkpoint),
                        "holdout_split": self.holdout, "holdout_images": len(self.holdout_loader.dataset),
                        "bn_batches": self.bn_batches.count, "batch_size": int(cfg.DATASET.BATCH_SIZE),
                        "image_size": int(cfg.DATASET.IMAGE_SIZE), "interpolation": str(cfg.DATASET.INTERPOLATION),
                        "pixels": pixels, "color_jitter": float(cfg.AUGMENTATION.COLOR_JITTER),
                        "crop_scale": [float(v) for v in cfg.AUGMENTATION.SCALE], "processes": ctx.world_size,
                        **self.supernet.facts}
        self.scored_in_generation = 0
        self.best_score = float("-inf")
        self.started = time.time()

    # ---- files -------------------------------------------------------------------------------
    def file_path(self, name: str) -> str:
        return os.path.join(self.ctx.run_dir, name)

    def resume(self) -> None:
        """Continue from the run folder's ``evolution_state.json`` when AUTO_RESUME finds one."""
        path = self.file_path(STATE_FILE)
        if not self.cfg.AUTO_RESUME or not os.path.isfile(path):
            record_config(self.ctx)
            return
        try:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            if saved.get("version") != _FILE_VERSION:
                raise ValueError(f"file version {saved.get('version')!r}, expected {_FILE_VERSION}")
            if saved["scoring"] != self.scoring:
                changed = sorted(k for k in set(saved["scoring"]) | set(self.scoring)
                                 if saved["scoring"].get(k) != self.scoring.get(k))
                raise ValueError(f"it scored paths otherwise (changed: {', '.join(changed)}); resume with "
                                 "the same supernet, data and settings")
            self.evolution.load_state_dict(saved["evolution"])
            self.best_score = self.evolution.best.score if self.evolution.best else self.best_score
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise RunError(f"cannot resume the evolution from {path}: {err}. Use the run's settings, or "
                           "another MODEL (or AUTO_RESUME False) for a new search") from err
        record_config(self.ctx)
        self.ctx.logger.info("resumed the evolution from %s: %d generation(s) scored, %d paths", path,
                             self.evolution.generation, len(self.evolution.history))

    def record(self) -> Dict[str, Any]:
        """evolution.json's content."""
        return dict(self.evolution.to_json(), method=self.method, flops_unit="MFLOPs",
                    supernet=os.path.abspath(self.checkpoint), scoring=self.scoring, **self.supernet.facts)

    def write_files(self) -> None:
        evolution = self.evolution
        atomic_write_text(json.dumps({"version": _FILE_VERSION, "scoring": self.scoring,
                                      "evolution": evolution.state_dict()}), self.file_path(STATE_FILE))
        atomic_write_text(json.dumps(self.record(), indent=1), self.file_path(RESULT_FILE))
        scored = [g["generation"] for g in evolution.log if g["best_score"] is not None]
        best = [g["best_score"] for g in evolution.log if g["best_score"] is not None]
        generations = sorted({c.generation for c in evolution.history})
        means = [float(np.mean([c.score for c in evolution.history if c.generation == g])) for g in generations]
        plot = plot_lines(self.file_path(PLOT_FILE), {"best so far": (scored, best),
                                                  "mean of the generation": (generations, means)},
                          title=f"Evolution on the {self.method} supernet", xlabel="generation",
                          ylabel=f"top-1 on {self.holdout} (%)", integer_x=True)
        if plot is None and len(evolution.log) == 1:
            self.ctx.logger.info("no %s: %s", PLOT_FILE, PLOT_HINT)

    # ---- scoring -----------------------------------------------------------------------------
    def fitness(self, arch: Any) -> float:
        start = time.time()
        result = evaluate_path(self.supernet.model, arch, self.holdout_loader, self.ctx, self.bn_batches,
                               log_name="Candidate", verbose=False)
        self.scored_in_generation += 1
        self.best_score = max(self.best_score, result["prec1"])
        flops = self.evolution.path_flops(self.supernet.space.encode(arch))
        self.ctx.logger.info("generation %d [%2d/%d] %s %.1f MFLOPs: Prec@1 %.3f (best so far %.3f), %.1fs",
                             self.evolution.generation, self.scored_in_generation, self.config.population,
                             self.supernet.describe(arch), flops, result["prec1"], self.best_score,
                             time.time() - start)
        return result["prec1"]

    def on_generation(self, evolution: Evolution) -> None:
        summary = evolution.log[-1]
        generation = summary["generation"]
        scores = [c.score for c in evolution.history if c.generation == generation]
        best = evolution.best
        self.ctx.logger.info(
            "generation %d done: %d scored (%s), %d above the FLOPs limit, %d seen before; mean Prec@1 %.3f; "
            "best so far %s; %.0fs elapsed", generation, len(scores),
            ", ".join(f"{n} {origin}" for origin, n in summary["scored"].items() if n) or "none",
            summary["rejected"], summary["skipped"], float(np.mean(scores)) if scores else float("nan"),
            f"{best.score:.3f} {self.supernet.describe(self.supernet.space.decode(best.genes))}" if best else "-",
            time.time() - self.started)
        self.scored_in_generation = 0
        if self.ctx.writer is not None and scores:
            self.ctx.writer.add_scalar("evolve/best_prec1", best.score, generation)
            self.ctx.writer.add_scalar("evolve/mean_prec1", float(np.mean(scores)), generation)
        if self.ctx.is_primary:
            self.write_files()


def preflight(cfg) -> None:
    """The launcher's checks before starting the processes (see ``lib.engine``)."""
    if str(cfg.METHOD) not in _SUPERNETS:
        raise ConfigError(f"evolve searches the supernet of METHOD {' or '.join(_SUPERNETS)}, not {cfg.METHOD!r}")
    evolution_config(cfg)
    if int(cfg.SPOS.BN_BATCHES) < 0:
        raise ConfigError(f"SPOS.BN_BATCHES must be >= 0, got {cfg.SPOS.BN_BATCHES}")
    _supernet_checkpoint(cfg)
    check_data_splits(cfg, ("train",))
    data_split_dir(cfg, str(cfg.SPOS.HOLDOUT_SPLIT))


def run(ctx: RunContext) -> Dict[str, Any]:
    """Run (or continue) the evolution; returns evolution.json's content."""
    preflight(ctx.cfg)
    search = _Search(ctx)
    config = search.config
    ctx.logger.info("evolution on the %s supernet %s: population %d, top-%d, %d mutations (p %.2f) + %d "
                    "crossovers, %d bred generations, FLOPs limit %s; scoring on %d images of DATA_DIR/%s "
                    "after %d recalibration batches", search.method, search.checkpoint, config.population,
                    config.top_k, config.mutations, config.mutation_prob, config.crossovers, config.generations,
                    f"{config.flops_limit:g} MFLOPs" if config.flops_limit is not None else "none",
                    search.scoring["holdout_images"], search.holdout, search.bn_batches.count)
    search.resume()
    if search.evolution.done:
        ctx.logger.info("the evolution is complete (%d generations)", search.evolution.generation)
    best = search.evolution.run(search.fitness, search.on_generation)
    if best is None:
        raise RunError(f"no path is within SPOS.EVOLUTION.FLOPS_LIMIT ({config.flops_limit} MFLOPs): raise it")
    ctx.logger.info("best path %s: %.1f MFLOPs, Prec@1 %.3f on %s; retrain it with tools/main.py retrain "
                    "and SPOS.EVOLUTION_JSON %s", search.supernet.describe(search.supernet.space.decode(
                        best.genes)), best.flops, best.score, search.holdout, search.file_path(RESULT_FILE))
    return search.record()
