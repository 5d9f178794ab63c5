"""Rank and linear correlation of two score lists (how well one ranking predicts another), in numpy:
Kendall's tau-b, Spearman's rho and Pearson's r, with scipy.stats' definitions (ties included)."""
from __future__ import annotations

import math
from typing import Dict, Sequence

import numpy as np

__all__ = ["kendall_tau", "spearman_rho", "pearson_r", "rank_correlations"]


def _pair(x: Sequence[float], y: Sequence[float]):
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"correlation needs two 1-D sequences of the same length, got {a.shape} and {b.shape}")
    if a.size < 2:
        raise ValueError(f"correlation needs at least 2 pairs, got {a.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("correlation needs finite values")
    return a, b


def pearson_r(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's linear correlation; NaN when either list is constant."""
    a, b = _pair(x, y)
    a, b = a - a.mean(), b - b.mean()
    norm = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / norm if norm > 0 else math.nan


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(1, values.size + 1, dtype=np.float64)
    _, groups, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(groups, weights=ranks)
    return sums[groups] / counts[groups]


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's r of the (tie-averaged) ranks."""
    a, b = _pair(x, y)
    return pearson_r(_average_ranks(a), _average_ranks(b))


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties in x) (n0 - ties in y)) over
    all n0 = n(n-1)/2 pairs; NaN when either list is constant. O(n^2) memory and time, fine for the
    tens to hundreds of paths a correlation study ranks."""
    a, b = _pair(x, y)
    upper = np.triu_indices(a.size, k=1)
    da = np.sign(a[:, None] - a[None, :])[upper]
    db = np.sign(b[:, None] - b[None, :])[upper]
    untied_a, untied_b = float(np.count_nonzero(da)), float(np.count_nonzero(db))
    if untied_a == 0 or untied_b == 0:
        return math.nan
    return float((da * db).sum()) / math.sqrt(untied_a * untied_b)


def rank_correlations(x: Sequence[float], y: Sequence[float]) -> Dict[str, float]:
    """``{"kendall_tau", "spearman_rho", "pearson_r"}`` of the two lists."""
    return {"kendall_tau": kendall_tau(x, y), "spearman_rho": spearman_rho(x, y), "pearson_r": pearson_r(x, y)}
