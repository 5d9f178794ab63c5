"""P-DARTS' progressive search as pure functions: the stages, the pruning of operations between
them, the skip-connect dropout schedule, and the final genotype.

P-DARTS (Chen et al., ICCV 2019) searches in stages of growing depth (officially 5, 11 and 17 cells)
while the operations in play on every edge shrink (8, 5, 3): after each stage the operations with
the lowest softmax(alpha) on each edge are switched off, and a fresh search network is built from
the switches for the next stage. The last stage's alphas give the genotype
(:func:`derive_genotype`), with at most ``max_skip`` skip-connects in the normal cell.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .genotypes import PRIMITIVES, Genotype
from .space import Switches, check_switches, edge_inputs, steps_for_edges

__all__ = ["SearchStage", "derive_genotype", "plan_stages", "prune_switches", "skip_dropout_rate"]

_NONE = PRIMITIVES.index("none")
_SKIP = PRIMITIVES.index("skip_connect")


@dataclass(frozen=True)
class SearchStage:
    """One stage of the search: a network of ``cells`` cells with ``channels`` initial channels and
    ``num_ops`` operations in play per edge, trained with skip-connect dropout ``skip_dropout``
    (the stage's base rate). After it, ``keep`` operations per edge stay in play (None: the last
    stage, whose alphas give the genotype)."""

    index: int
    cells: int
    channels: int
    num_ops: int
    keep: Optional[int]
    skip_dropout: float


def plan_stages(cells: Sequence[int] = (5, 11, 17), channels: Sequence[int] = (16, 16, 16),
                num_ops: Sequence[int] = (8, 5, 3), skip_dropout: Sequence[float] = (0.0, 0.4, 0.7)
                ) -> List[SearchStage]:
    """The stages of a search, one per entry of the (equally long) sequences; the defaults are the
    official CIFAR-10 search (its README's CIFAR-100 rates are 0.1, 0.4, 0.7).

    ``num_ops`` must start with every operation (``len(PRIMITIVES)``), decrease strictly, and end
    with at least 2 (the final choice drops ``none`` and needs another operation left).
    """
    lengths = {len(cells), len(channels), len(num_ops), len(skip_dropout)}
    if len(lengths) != 1 or not len(cells):
        raise ValueError(f"cells, channels, num_ops and skip_dropout need one entry per stage; got lengths "
                         f"{len(cells)}, {len(channels)}, {len(num_ops)}, {len(skip_dropout)}")
    if num_ops[0] != len(PRIMITIVES) or num_ops[-1] < 2 or any(a <= b for a, b in zip(num_ops, num_ops[1:])):
        raise ValueError(f"num_ops must start at {len(PRIMITIVES)} (every operation), decrease strictly and "
                         f"end at 2 or more; got {list(num_ops)}")
    if any(c < 1 for c in cells) or any(c < 1 for c in channels):
        raise ValueError(f"cells and channels must be positive; got {list(cells)}, {list(channels)}")
    if any(not 0.0 <= p < 1.0 for p in skip_dropout):
        raise ValueError(f"skip_dropout rates must be in [0, 1); got {list(skip_dropout)}")
    last = len(cells) - 1
    return [SearchStage(index=s, cells=int(cells[s]), channels=int(channels[s]), num_ops=int(num_ops[s]),
                        keep=None if s == last else int(num_ops[s + 1]), skip_dropout=float(skip_dropout[s]))
            for s in range(len(cells))]


def skip_dropout_rate(base_rate: float, epoch: int, epochs: int, weights_only_epochs: int,
                      decay: float = 0.2) -> float:
    """The dropout rate after skip-connects in ``epoch`` (0-based) of a stage of ``epochs``.

    The official schedule: while only the weights train, ``base_rate * (epochs - epoch - 1) /
    epochs``; from ``weights_only_epochs`` on, when the alphas train too, ``base_rate`` decaying as
    ``exp(-decay * (epoch - weights_only_epochs))``. (The rate jumps back to ``base_rate`` when
    the alphas start training; kept as published.)
    """
    if epoch < weights_only_epochs:
        return base_rate * (epochs - epoch - 1) / epochs
    return base_rate * math.exp(-(epoch - weights_only_epochs) * decay)


def _softmax(alphas: Any, where: str, rows: int) -> np.ndarray:
    values = np.asarray(alphas.numpy() if hasattr(alphas, "numpy") else alphas, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != rows:
        raise ValueError(f"{where} must have one row per edge ({rows}), got shape {list(values.shape)}")
    weights = np.exp(values - values.max(axis=1, keepdims=True))
    # Summing in sorted order makes equal alphas give bit-equal weights wherever they sit in their
    # rows, so that ties between edges are real ties.
    return weights / np.sort(weights, axis=1).sum(axis=1, keepdims=True)


def _edge_weights(alphas: Any, switches: Switches, where: str) -> np.ndarray:
    """softmax(alphas) per edge, scattered to ``[edges, len(PRIMITIVES)]`` (0 where not in play)."""
    weights = _softmax(alphas, where, len(switches))
    on = np.asarray(switches, dtype=bool)
    if weights.shape[1] != on[0].sum():
        raise ValueError(f"{where} has {weights.shape[1]} columns but the switches leave {on[0].sum()} "
                         f"operations in play per edge")
    full = np.zeros(on.shape)
    full[on] = weights.reshape(-1)
    return full


def prune_switches(switches: Sequence[Sequence[bool]], alphas: Any, keep: int,
                   drop_none_first: bool = False) -> Switches:
    """Switch off all but ``keep`` operations per edge: those with the lowest softmax(alphas)
    first (on equal weights the earlier operation). With ``drop_none_first`` 'none' goes first
    whatever its weight (the official rule after the last stage). ``alphas``: one row per edge,
    one column per operation in play."""
    switches = check_switches(switches)
    weights = _edge_weights(alphas, switches, "alphas")
    pruned = []
    for row, edge_weights in zip(switches, weights):
        ops = [j for j, on in enumerate(row) if on]
        if not 1 <= keep < len(ops):
            raise ValueError(f"keep={keep} operations per edge: choose 1..{len(ops) - 1} of the {len(ops)} in play")
        if drop_none_first and _NONE in ops:
            ops.remove(_NONE)
        # Stable sort: on equal weights the earlier operation is dropped first.
        kept = set(sorted(ops, key=lambda j: edge_weights[j])[len(ops) - keep:])
        pruned.append(tuple(j in kept for j in range(len(PRIMITIVES))))
    return tuple(pruned)


def _choose_edges(weights: np.ndarray, switches: Switches, banned_skips: set, steps: int
                  ) -> List[Tuple[int, int]]:
    """(edge, op) kept in a cell: each edge's strongest operation in play other than 'none' and a
    removed skip-connect (the later one on equal weights), then both edges of node 0 and the two
    best edges of every later node (the later edge on equal scores), in edge order."""
    choice, score = [], []
    for edge, (edge_weights, row) in enumerate(zip(weights, switches)):
        candidates = [j for j, on in enumerate(row) if on and j != _NONE
                      and not (j == _SKIP and edge in banned_skips)]
        if not candidates:
            choice.append(None)
            score.append(-1.0)
            continue
        best = max(reversed(candidates), key=lambda j: edge_weights[j])  # max keeps the first: the later op
        choice.append(best)
        score.append(edge_weights[best])
    kept, start = [], 0
    for node in range(steps):
        edges = list(range(start, start + node + 2))
        if node > 0:
            edges = sorted(sorted(edges, key=lambda e: score[e])[-2:])  # stable: the later edge wins ties
        for edge in edges:
            if choice[edge] is None:
                raise ValueError(f"edge {edge} has no operation left but 'none' and a removed skip-connect; "
                                 f"no genotype with fewer skip-connects exists for these switches")
            kept.append((edge, choice[edge]))
        start += node + 2
    return kept


def derive_genotype(alphas_normal: Any, alphas_reduce: Any, switches_normal: Sequence[Sequence[bool]],
                    switches_reduce: Sequence[Sequence[bool]], max_skip: int = 8) -> Genotype:
    """The genotype of the last stage's search (the official final step).

    ``switches_*``: the last stage's switches (one row of ``len(PRIMITIVES)`` booleans per edge);
    ``alphas_*``: its raw architecture parameters (one row per edge, one column per operation in
    play; numpy, nested lists or Paddle tensors). Per edge, softmax over the row with 'none' set to
    0; an edge's operation is its strongest one other than 'none', its score that weight. Each cell
    keeps both edges of node 0 and the two best edges of every other node (ties: the later edge)
    and concatenates all intermediate nodes. In the normal cell, while more than ``max_skip`` kept
    edges are skip-connects, the weakest of those skip-connect weights is set to 0 for good and
    everything is chosen again. The pairs of each node are listed by input index.
    """
    switches_normal = check_switches(switches_normal, "switches_normal")
    switches_reduce = check_switches(switches_reduce, "switches_reduce")
    if len(switches_normal) != len(switches_reduce):
        raise ValueError(f"switches_normal has {len(switches_normal)} edges, switches_reduce "
                         f"{len(switches_reduce)}; both cells have the same edges")
    if max_skip < 0:
        raise ValueError(f"max_skip must be >= 0, got {max_skip}")
    steps = steps_for_edges(len(switches_normal))
    inputs = edge_inputs(steps)
    genes = []
    for alphas, switches, limit, where in ((alphas_normal, switches_normal, max_skip, "alphas_normal"),
                                           (alphas_reduce, switches_reduce, None, "alphas_reduce")):
        weights = _edge_weights(alphas, switches, where)
        weights[:, _NONE] = 0.0
        banned: set = set()
        kept = _choose_edges(weights, switches, banned, steps)
        while limit is not None and sum(op == _SKIP for _, op in kept) > limit:
            skip_edges = [edge for edge, op in kept if op == _SKIP]
            banned.add(min(skip_edges, key=lambda e: weights[e, _SKIP]))  # the earlier edge on ties
            kept = _choose_edges(weights, switches, banned, steps)
        genes.append(tuple((PRIMITIVES[op], inputs[edge][1]) for edge, op in kept))
    concat = tuple(range(2, steps + 2))
    return Genotype(genes[0], concat, genes[1], concat)
