"""The evaluation loop every engine shares: loss, Prec@1 and Prec@5 of a model over a loader's
whole dataset, the same in one process and sharded over many."""
from __future__ import annotations

import math
import sys
import time
from collections import OrderedDict
from typing import Any, Dict, List, Sequence

import paddle
import paddle.distributed as dist
import paddle.nn.functional as F
from tqdm import tqdm

from lib.engine.common import RunContext

__all__ = ["EVAL_METRIC_NAMES", "topk_correct", "evaluate", "metrics_from_sums"]

EVAL_METRIC_NAMES = ("loss", "prec1", "prec5")


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
             progress_bar: bool = False, verbose: bool = True) -> Dict[str, float]:
    """Loss, Prec@1 and Prec@5 (%) of ``model`` over ``loader``'s whole dataset, plus ``images``
    (counted), ``skipped_images`` (unreadable, left out) and ``seconds``.

    Distributed: each rank evaluates its shard, the padded duplicates at the end of a shard are
    left out, and sums (loss, hits, counts) are reduced over the ranks, so the result equals a
    one-process evaluation. Numbers reach the host only every ``LOG_INTERVAL`` batches (and at
    the end); then a tqdm bar (``progress_bar`` on a terminal) or a log line shows them.
    ``verbose`` False shows nothing (callers that evaluate many models log one line each).
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
        # positions of unreadable images the loader left out of this batch; the shard's real
        # samples come before its padding, so the kept images are the first of the batch
        skipped = loader.batch_skipped
        real = min(valid_left, images.shape[0] + len(skipped))
        valid_left -= real
        keep = real - sum(1 for position in skipped if position < real)
        if keep > 0:
            if keep < images.shape[0]:
                images, labels = images[:keep], labels[:keep]
            output = model(images)
            loss_sum = F.cross_entropy(output, labels, reduction="sum").astype("float64")
            top1, top5 = topk_correct(output, labels)
            totals += paddle.stack([loss_sum.reshape([]), top1, top5,
                                    paddle.to_tensor(float(keep), dtype="float64")])
        bar.update(1)
        if verbose and (batch_idx % log_interval == 0 or batch_idx == last_idx):
            metrics = metrics_from_sums(*_reduced(totals, ctx))
            if show_bar:
                bar.set_postfix(prec1=f"{metrics['prec1']:.3f}", prec5=f"{metrics['prec5']:.3f}")
            else:
                ctx.logger.info("%s: [%4d/%d]  Loss: %.4f  Prec@1: %.4f  Prec@5: %.4f",
                                log_name, batch_idx, last_idx, metrics["loss"], metrics["prec1"],
                                metrics["prec5"])
    bar.close()
    skipped = paddle.to_tensor([float(loader.skipped_in_epoch)], dtype="float64")
    loss_sum, top1, top5, count, skipped = _reduced(paddle.concat([totals, skipped]), ctx)
    result = metrics_from_sums(loss_sum, top1, top5, count)
    result["images"] = int(round(count))
    result["skipped_images"] = int(round(skipped))
    if skipped:
        ctx.logger.warning("%s: %d unreadable image(s) skipped, not counted in the metrics",
                           log_name, result["skipped_images"])
    result["seconds"] = time.time() - start
    return result
