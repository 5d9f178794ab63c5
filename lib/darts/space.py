"""The DARTS cell search space: edges of a cell and the per-edge switches of operations in play.

A cell with ``steps`` intermediate nodes has one edge from every earlier state into every node:
node ``i`` (0-based) has ``i + 2`` input edges, edge ``j`` of the node taking state ``j`` (0 and 1
being the cell inputs). Edges are numbered node by node, so with 4 steps edges 0-1 feed node 0,
2-4 node 1, 5-8 node 2 and 9-13 node 3.

Switches say which operations of ``PRIMITIVES`` are still in play on each edge: one row of
``len(PRIMITIVES)`` booleans per edge, in ``PRIMITIVES`` order. The search network holds one
architecture weight per switched-on operation, in the same order.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

from .genotypes import PRIMITIVES

__all__ = ["Switches", "check_switches", "edge_inputs", "full_switches", "num_edges", "ops_in_play",
           "steps_for_edges"]

Switches = Tuple[Tuple[bool, ...], ...]


def num_edges(steps: int = 4) -> int:
    """Edges of a cell with ``steps`` intermediate nodes (14 for DARTS' 4)."""
    return sum(2 + i for i in range(steps))


def steps_for_edges(edges: int) -> int:
    """The number of intermediate nodes of a cell with ``edges`` edges (4 for 14)."""
    steps = 0
    while num_edges(steps) < edges:
        steps += 1
    if num_edges(steps) != edges:
        raise ValueError(f"{edges} edges make no cell: a cell with n nodes has 2 + 3 + ... + (n + 1) edges "
                         f"(14 for 4 nodes)")
    return steps


def edge_inputs(steps: int = 4) -> List[Tuple[int, int]]:
    """``(node, input state)`` of every edge, in edge order."""
    return [(node, j) for node in range(steps) for j in range(node + 2)]


def full_switches(steps: int = 4) -> Switches:
    """Every operation in play on every edge: where a P-DARTS search starts."""
    return tuple(tuple(True for _ in PRIMITIVES) for _ in range(num_edges(steps)))


def check_switches(switches: Sequence[Sequence[bool]], where: str = "switches") -> Switches:
    """Validate ``switches`` (one row of ``len(PRIMITIVES)`` booleans per edge of a cell, the same
    number switched on in every row) and return them as tuples."""
    rows = [tuple(row) for row in switches]
    steps_for_edges(len(rows))
    for edge, row in enumerate(rows):
        if len(row) != len(PRIMITIVES) or not all(isinstance(on, bool) for on in row):
            raise ValueError(f"{where}[{edge}] must be {len(PRIMITIVES)} booleans (one per operation of "
                             f"{', '.join(PRIMITIVES)}), got {row!r}")
    counts = {sum(row) for row in rows}
    if len(counts) != 1 or 0 in counts:
        raise ValueError(f"{where} must switch on the same number (at least one) of operations on every "
                         f"edge; got {[sum(row) for row in rows]}")
    return tuple(rows)


def ops_in_play(switch: Sequence[bool]) -> List[str]:
    """The operation names switched on in one edge's row, in ``PRIMITIVES`` order."""
    return [name for name, on in zip(PRIMITIVES, switch) if on]
