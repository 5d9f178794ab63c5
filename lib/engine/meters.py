"""The one way the engines' epoch loops keep their training metrics, log them and write them to
TensorBoard (retrain, the search, and the methods to come).

Per-batch values are accumulated where they are (device tensors stay on the device, host numbers
on the host), weighted by the batch size; only at log steps are they reduced over the ranks (one
all-reduce) and brought to the host. A log step writes one line::

    Train: 3 [  50/625]  Loss: 2.301234 (2.4567)  Prec@1: 12.5000 (10.2500)  ...  412.3 img/s
        LR: 1.000e-02  Data: 0.004s  <extra>

(on one line: each shown meter's latest batch over all ranks, then the epoch's mean so far), and the
epoch means as TensorBoard scalars. The epoch loop returns :meth:`EpochMeters.averages`.

Divergence: the watched meter (``loss``) must stay finite. Each step folds "is it NaN or Inf?" into
a few device scalars (no host sync); every log step, and :meth:`EpochMeters.check_finite` before a
checkpoint is written, looks at them and raises :class:`DivergedError` naming the first non-finite
step, its value and learning rate, so nothing trained after it is saved.

On a terminal, the primary rank also shows a progress bar for the epoch (batches done, speed, time
left, the epoch's loss and Prec@1 as of the last log step; it stays as the epoch's line), with the
log lines above it. :func:`record_epoch` ends an epoch: ``summary.csv`` and the PNG plots of the run folder.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import (Any, Callable, Dict, Iterable, Iterator, Mapping, Optional, Sequence, Tuple,
                    Union)

import paddle
import paddle.distributed as dist
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from lib.engine.common import RunContext, RunError
from pimm.utils import SUMMARY_FILE, update_summary
from pimm.utils.plots import PlotsUnavailable, plot_run

__all__ = ["Meter", "EpochMeters", "DivergedError", "record_epoch"]

# the meters a progress bar shows, when the loop has them
_BAR_METERS = ("loss", "prec1")

Value = Union[float, paddle.Tensor]


@dataclass(frozen=True)
class Meter:
    """One tracked quantity: shown in the log line as ``label`` (None: TensorBoard only), with
    ``precision`` digits for the latest value, under TensorBoard ``tag`` (default
    ``train/<name>``)."""

    name: str
    label: Optional[str] = None
    precision: int = 4
    tag: Optional[str] = None

    @property
    def tensorboard_tag(self) -> str:
        return self.tag or f"train/{self.name}"


class DivergedError(RunError):
    """The watched training value (the loss) became NaN or Inf; nothing after the last finite
    state was saved."""


class _FiniteWatch:
    """Finds the first step whose value is NaN or Inf without a host sync per step: device
    scalars record whether one was seen, how many finite steps came before it, and its value;
    host values (already synced) are judged directly. ``lrs`` keeps each step's learning rate."""

    def __init__(self) -> None:
        self.first_idx: Optional[int] = None  # batch index of the first watched step
        self.seen: Optional[paddle.Tensor] = None
        self.finite_steps: Optional[paddle.Tensor] = None
        self.value: Optional[paddle.Tensor] = None
        self.host_first: Optional[Tuple[int, float]] = None
        self.lrs: Dict[int, float] = {}

    def record(self, batch_idx: int, value: Value, lr: Optional[float]) -> None:
        if self.first_idx is None:
            self.first_idx = batch_idx
        self.lrs[batch_idx] = math.nan if lr is None else float(lr)
        if not isinstance(value, paddle.Tensor):
            if self.host_first is None and not math.isfinite(value):
                self.host_first = (batch_idx, float(value))
            return
        value = value.detach().reshape([]).astype("float64")
        bad = paddle.logical_not(paddle.isfinite(value))
        if self.seen is None:
            self.seen = paddle.to_tensor(False)
            self.finite_steps = paddle.zeros([], "int64")
            self.value = paddle.full([], math.nan, "float64")
        first = paddle.logical_and(bad, paddle.logical_not(self.seen))
        self.finite_steps = self.finite_steps + paddle.logical_not(
            paddle.logical_or(self.seen, bad)).astype("int64")
        self.value = paddle.where(first, value, self.value)
        self.seen = paddle.logical_or(self.seen, bad)

    def first_bad(self) -> Tuple[float, float]:
        """``(batch index, value)`` of this rank's first non-finite step; ``(inf, nan)`` if none."""
        found = [self.host_first] if self.host_first is not None else []
        if self.seen is not None and bool(self.seen):
            found.append((self.first_idx + int(self.finite_steps), float(self.value)))
        return min(found) if found else (math.inf, math.nan)


class EpochMeters:
    """The metrics of one epoch of a training loop on this rank (see the module doc).

    ``for batch_idx, batch in meters.batches(loader, skip)`` times the data loading;
    ``update(batch_size, lr=..., name=value, ...)`` records a step (``None`` values are skipped, so
    a meter counts only the steps that measured it); ``log_due(batch_idx)`` says when to ``log``.
    ``watch`` names the meter that must stay finite (see the module doc; None: no check).
    ``progress_bar``: show the epoch's bar (None: on the primary rank when stdout and stderr are
    terminals). ``num_epochs``: the run's epoch count the bar shows (None: ``EPOCHS``).
    """

    def __init__(self, ctx: RunContext, epoch: int, num_batches: int, meters: Sequence[Meter],
                 title: str = "Train", watch: Optional[str] = "loss",
                 progress_bar: Optional[bool] = None, num_epochs: Optional[int] = None) -> None:
        self.ctx, self.epoch, self.num_batches, self.title = ctx, epoch, num_batches, title
        self.num_epochs = int(num_epochs if num_epochs is not None else ctx.cfg.EPOCHS)
        if progress_bar is None:
            progress_bar = ctx.is_primary and sys.stdout.isatty() and sys.stderr.isatty()
        self.progress_bar = bool(progress_bar)
        self.meters = {m.name: m for m in meters}
        self.counts: Dict[str, int] = {name: 0 for name in self.meters}
        self._sums: Dict[str, Value] = {name: 0.0 for name in self.meters}
        self._weights: Dict[str, float] = {name: 0.0 for name in self.meters}
        self._latest: Dict[str, Tuple[Value, float]] = {name: (0.0, 0.0) for name in self.meters}
        self._averages = OrderedDict((name, math.nan) for name in self.meters)
        self._log_interval = max(1, int(ctx.cfg.LOG_INTERVAL))
        self._since_log = time.time()
        self._images_since_log = 0
        self._steps_since_log = 0
        self._data_seconds = 0.0
        self._bar: Optional[tqdm] = None
        self._watch = watch
        self._finite = _FiniteWatch()
        self._batch_idx = 0

    def batches(self, loader: Iterable, skip: int = 0,
                skipped: Optional[Callable[[int, Any], None]] = None) -> Iterator[Tuple[int, Any]]:
        """``(batch_idx, batch)`` of ``loader`` from ``skip`` on, timing the wait for each batch.
        Skipped batches are still drawn, so the later ones get the uninterrupted epoch's order
        and augmentation (a run resumed from a mid-epoch recovery point); ``skipped(batch_idx,
        batch)`` sees each of them (e.g. to keep what the epoch's end needs from them)."""
        if not self.progress_bar:
            yield from self._timed(loader, skip, skipped)
            return
        self._bar = tqdm(total=self.num_batches, initial=skip, unit="batch", dynamic_ncols=True,
                         desc=f"{self.title} {self.epoch + 1}/{self.num_epochs}")
        try:
            # log lines go above the bar instead of through it
            with logging_redirect_tqdm(loggers=[self.ctx.logger, logging.getLogger("lib"),
                                                logging.getLogger("pimm")]):
                for batch_idx, batch in self._timed(loader, skip, skipped):
                    yield batch_idx, batch
                    self._bar.update(1)
        finally:
            self._bar.close()
            self._bar = None

    def _timed(self, loader: Iterable, skip: int,
               skipped: Optional[Callable[[int, Any], None]]) -> Iterator[Tuple[int, Any]]:
        tick = time.time()
        for batch_idx, batch in enumerate(loader):
            if batch_idx >= skip:
                self._data_seconds += time.time() - tick
                self._batch_idx = batch_idx
                yield batch_idx, batch
            elif skipped is not None:
                skipped(batch_idx, batch)
            tick = time.time()

    def update(self, batch_size: int, lr: Optional[float] = None, **values: Optional[Value]) -> None:
        """Record one step on ``batch_size`` images: each value (a number, or a 0-d tensor left on
        its device) is this rank's mean over the batch; ``lr``, the step's learning rate, is what a
        divergence error reports."""
        if self._watch is not None and values.get(self._watch) is not None:
            self._finite.record(self._batch_idx, values[self._watch], lr)
        for name, value in values.items():
            if value is None:
                continue
            if isinstance(value, paddle.Tensor):
                value = value.detach().reshape([]).astype("float64")
            contribution = value * batch_size
            self._sums[name] = self._sums[name] + contribution
            self._weights[name] += batch_size
            self._latest[name] = (contribution, float(batch_size))
            self.counts[name] += 1
        self._images_since_log += batch_size
        self._steps_since_log += 1

    def log_due(self, batch_idx: int) -> bool:
        return batch_idx % self._log_interval == 0 or batch_idx == self.num_batches - 1

    def _reduce(self) -> Tuple[Dict[str, float], Dict[str, float]]:
        """(epoch means, latest batch's means) over all ranks; NaN where nothing was recorded."""
        names = list(self.meters)
        host = ([self._sums[n] for n in names] + [self._weights[n] for n in names]
                + [self._latest[n][0] for n in names] + [self._latest[n][1] for n in names])
        stacked = paddle.stack([v if isinstance(v, paddle.Tensor) else paddle.to_tensor(v, dtype="float64")
                                for v in host])
        if self.ctx.distributed:
            dist.all_reduce(stacked)
        values = stacked.numpy().tolist()
        n = len(names)

        def means(sums, weights):
            return OrderedDict((name, s / w if w > 0 else math.nan)
                               for name, s, w in zip(names, sums, weights))

        return means(values[:n], values[n:2 * n]), means(values[2 * n:3 * n], values[3 * n:])

    def check_finite(self) -> None:
        """Raise DivergedError if the watched value was NaN or Inf at any step so far (on any
        rank: a collective when distributed, so call it on every rank)."""
        step, value = self._finite.first_bad()
        if self.ctx.distributed:
            mine = paddle.to_tensor([step, value], dtype="float64")
            gathered: list = []
            dist.all_gather(gathered, mine)
            step, value = min((tuple(t.numpy().tolist()) for t in gathered),
                              key=lambda found: found[0])
        if math.isfinite(step):
            step = int(step)
            lr = self._finite.lrs.get(step, math.nan)
            raise DivergedError(
                f"training diverged: {self._watch} {value} at epoch {self.epoch}, step {step} "
                f"(LR {lr:.3e}); stopped before saving anything trained after it, so a rerun "
                "resumes from the last finite checkpoint. Lower LR (or check the data) and run "
                "again")

    def log(self, batch_idx: int, lr: float, extra: str = "",
            scalars: Optional[Mapping[str, float]] = None) -> Dict[str, float]:
        """Check for divergence (:meth:`check_finite`), reduce, log one line (``extra`` appended)
        and write the epoch means, ``train/lr`` and ``scalars`` to TensorBoard; returns the epoch
        means so far."""
        ctx = self.ctx
        self.check_finite()
        self._averages, latest = self._reduce()
        elapsed = max(time.time() - self._since_log, 1e-9)
        shown = []
        for name, meter in self.meters.items():
            if meter.label is None:
                continue
            if self.counts[name]:
                shown.append(f"{meter.label}: {latest[name]:.{meter.precision}f} "
                             f"({self._averages[name]:.4f})")
            else:
                shown.append(f"{meter.label}: -")
        data = self._data_seconds / max(self._steps_since_log, 1)
        ctx.logger.info("%s: %d [%4d/%d]  %s  %.1f img/s  LR: %.3e  Data: %.3fs%s", self.title,
                        self.epoch, batch_idx, self.num_batches, "  ".join(shown),
                        self._images_since_log * ctx.world_size / elapsed, lr, data,
                        f"  {extra}" if extra else "")
        if ctx.writer is not None:
            step = self.epoch * self.num_batches + batch_idx
            for name, meter in self.meters.items():
                if self.counts[name]:
                    ctx.writer.add_scalar(meter.tensorboard_tag, self._averages[name], step)
            ctx.writer.add_scalar("train/lr", lr, step)
            for tag, value in (scalars or {}).items():
                ctx.writer.add_scalar(tag, value, step)
        if self._bar is not None:
            self._bar.set_postfix({self.meters[name].label or name: f"{self._averages[name]:.4f}"
                                   for name in _BAR_METERS if self.counts.get(name)}, refresh=False)
        self._since_log = time.time()
        self._images_since_log = self._steps_since_log = 0
        self._data_seconds = 0.0
        return OrderedDict(self._averages)

    def averages(self) -> Dict[str, float]:
        """The epoch means over all ranks as of the last log step (the last batch always logs);
        NaN for a meter that recorded nothing."""
        return OrderedDict(self._averages)


_plots_unavailable_said = set()


def record_epoch(ctx: RunContext, epoch: int, train_metrics: Mapping[str, Any],
                 eval_metrics: Mapping[str, Any]) -> None:
    """The end of an epoch, on the primary rank: append it to the run folder's ``summary.csv`` and
    re-draw the folder's plots (``pimm.utils.plots``). Without matplotlib the run goes on and the
    log says once how to get the plots."""
    if not ctx.is_primary:
        return
    update_summary(epoch, train_metrics, eval_metrics, os.path.join(ctx.run_dir, SUMMARY_FILE))
    try:
        plot_run(ctx.run_dir, num_classes=int(ctx.cfg.DATASET.NUM_CLASSES))
    except PlotsUnavailable as err:
        if ctx.run_dir not in _plots_unavailable_said:
            _plots_unavailable_said.add(ctx.run_dir)
            ctx.logger.warning("no plots: %s (then python tools/plot.py %s draws them)", err, ctx.run_dir)
