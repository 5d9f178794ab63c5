"""A picture of a genotype's two cells (PNG), drawn with matplotlib's primitives.

Each cell is a DAG: the two inputs ``c_{k-2}`` and ``c_{k-1}`` bottom left, the intermediate
nodes 0..n-1 along the top, the output ``c_{k}`` (the concatenation, dashed arrows) on the right;
every kept edge is an arrow labelled with its operation. matplotlib is optional: :func:`plot_genotype` raises
``ModuleNotFoundError`` without it and callers say how to get it (``pimm.utils.plots.PLOT_HINT``).
"""
from __future__ import annotations

import math
import os
from typing import Dict, Sequence, Tuple

from pimm.utils.file_io import atomic_write_bytes

from .genotypes import PRIMITIVES, Genotype, validate_genotype

__all__ = ["plot_genotype"]

_COLOURS = dict(zip(PRIMITIVES, ("#9e9e9e", "#1f77b4", "#17becf", "#7f7f7f", "#d62728", "#ff7f0e",
                                 "#2ca02c", "#9467bd")))
Point = Tuple[float, float]


def _layout(steps: int) -> Dict[str, Point]:
    # Every state on one ellipse: points in convex position, so no straight edge passes through a
    # node it does not connect. Inputs bottom left, intermediate nodes along the top, output right.
    def at(degrees: float) -> Point:
        angle = math.radians(degrees)
        return (3.6 * math.cos(angle), 1.7 * math.sin(angle))

    positions = {"c_{k-2}": at(208.0), "c_{k-1}": at(250.0)}
    for node in range(steps):
        positions[str(node)] = at(155.0 - 140.0 * node / max(steps - 1, 1))
    positions["c_{k}"] = at(-45.0)
    return positions


def _name(state: int) -> str:
    return ("c_{k-2}", "c_{k-1}")[state] if state < 2 else str(state - 2)


def _draw_cell(ax, edges: Sequence[Tuple[str, int]], concat: Sequence[int], title: str) -> None:
    from matplotlib.patches import FancyArrowPatch

    steps = len(edges) // 2
    positions = _layout(steps)
    for name, (x, y) in positions.items():
        is_io = name.startswith("c_")
        ax.text(x, y, f"${name}$" if is_io else name, ha="center", va="center", fontsize=11, zorder=3,
                bbox=dict(boxstyle="round,pad=0.4", fc="#c6e5a8" if is_io else "#b6d0f2", ec="black"))
    for position, (op, state) in enumerate(edges):
        start, end = positions[_name(state)], positions[str(position // 2)]
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, lw=1.6,
                                     color=_COLOURS[op], shrinkA=14, shrinkB=14, zorder=1))
        # labels of the two edges into a node sit at different points of their lines
        t = 0.38 if position % 2 == 0 else 0.66
        ax.text(start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1]), op, ha="center",
                va="center", fontsize=7, color=_COLOURS[op], zorder=2,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    out = positions["c_{k}"]
    for state in concat:
        ax.add_patch(FancyArrowPatch(positions[_name(state)], out, arrowstyle="-|>", mutation_scale=10,
                                     lw=1.0, color="#bdbdbd", linestyle="--", shrinkA=14, shrinkB=16,
                                     zorder=0))
    ax.set_xlim(-4.3, 4.3)
    ax.set_ylim(-2.2, 2.2)
    ax.set_title(title)
    ax.axis("off")


def plot_genotype(genotype: Genotype, path: str, title: str = "") -> str:
    """Draw the normal and the reduction cell of ``genotype`` one above the other into the PNG
    ``path`` (written atomically); returns ``path``. Raises ModuleNotFoundError without
    matplotlib."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import io

    import matplotlib.pyplot as plt

    genotype = validate_genotype(genotype)
    fig, axes = plt.subplots(2, 1, figsize=(8.0, 8.0))
    try:
        _draw_cell(axes[0], genotype.normal, genotype.normal_concat, "normal cell")
        _draw_cell(axes[1], genotype.reduce, genotype.reduce_concat,
                   "reduction cell (operations on $c_{k-2}$, $c_{k-1}$ stride 2)")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_bytes(buffer.getvalue(), path)
    return path
