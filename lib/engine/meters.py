"""The one way the engines' epoch loops keep their training metrics, log them and write them to
TensorBoard (retrain, the search, and the methods to come).

Per-batch values are accumulated where they are (device tensors stay on the device, host numbers
on the host), weighted by the batch size; only at log steps are they reduced over the ranks (one
all-reduce) and brought to the host. A log step writes one line::

    Train: 3 [  50/625]  Loss: 2.301234 (2.4567)  Prec@1: 12.5000 (10.2500)  ...  412.3 img/s
        LR: 1.000e-02  Data: 0.004s  <extra>

(on one line: each shown meter's latest batch over all ranks, then the epoch's mean so far), and the
epoch means as TensorBoard scalars. The epoch loop returns :meth:`EpochMeters.averages`.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Union

import paddle
import paddle.distributed as dist

from lib.engine.common import RunContext

__all__ = ["Meter", "EpochMeters"]

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


class EpochMeters:
    """The metrics of one epoch of a training loop on this rank (see the module doc).

    ``for batch_idx, batch in meters.batches(loader, skip)`` times the data loading;
    ``update(batch_size, name=value, ...)`` records a step (``None`` values are skipped, so a meter
    counts only the steps that measured it); ``log_due(batch_idx)`` says when to ``log``.
    """

    def __init__(self, ctx: RunContext, epoch: int, num_batches: int, meters: Sequence[Meter],
                 title: str = "Train") -> None:
        self.ctx, self.epoch, self.num_batches, self.title = ctx, epoch, num_batches, title
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

    def batches(self, loader: Iterable, skip: int = 0) -> Iterator[Tuple[int, Any]]:
        """``(batch_idx, batch)`` of ``loader`` from ``skip`` on, timing the wait for each batch.
        Skipped batches are still drawn, so the later ones get the uninterrupted epoch's order
        and augmentation (a run resumed from a mid-epoch recovery point)."""
        tick = time.time()
        for batch_idx, batch in enumerate(loader):
            if batch_idx >= skip:
                self._data_seconds += time.time() - tick
                yield batch_idx, batch
            tick = time.time()

    def update(self, batch_size: int, **values: Optional[Value]) -> None:
        """Record one step on ``batch_size`` images: each value (a number, or a 0-d tensor left on
        its device) is this rank's mean over the batch."""
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

    def log(self, batch_idx: int, lr: float, extra: str = "",
            scalars: Optional[Mapping[str, float]] = None) -> Dict[str, float]:
        """Reduce, log one line (``extra`` appended) and write the epoch means, ``train/lr`` and
        ``scalars`` to TensorBoard; returns the epoch means so far."""
        ctx = self.ctx
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
        self._since_log = time.time()
        self._images_since_log = self._steps_since_log = 0
        self._data_seconds = 0.0
        return OrderedDict(self._averages)

    def averages(self) -> Dict[str, float]:
        """The epoch means over all ranks as of the last log step (the last batch always logs);
        NaN for a meter that recorded nothing."""
        return OrderedDict(self._averages)
