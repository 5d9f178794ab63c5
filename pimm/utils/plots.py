"""PNG plots of run results. matplotlib is optional: without it nothing is drawn and the functions
return None, and callers say how to get the plots (``MATPLOTLIB_HINT``)."""
from __future__ import annotations

import os
from typing import Optional, Sequence

__all__ = ["MATPLOTLIB_HINT", "save_scatter_plot"]

MATPLOTLIB_HINT = "install matplotlib (python -m pip install matplotlib, or pip install -e .[plot]) for the PNG plots"


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def save_scatter_plot(path: str, x: Sequence[float], y: Sequence[float], *, xlabel: str, ylabel: str,
                      title: str, labels: Optional[Sequence[str]] = None) -> Optional[str]:
    """A scatter plot of ``(x, y)`` with each point annotated by ``labels`` (if given), written
    atomically to ``path``; returns ``path``, or None when matplotlib is not installed."""
    plt = _pyplot()
    if plt is None:
        return None
    figure, axes = plt.subplots(figsize=(5.5, 4.5), dpi=120)
    try:
        axes.scatter(x, y, s=28, color="tab:blue", zorder=2)
        for i, label in enumerate(labels or ()):
            axes.annotate(label, (x[i], y[i]), textcoords="offset points", xytext=(4, 3), fontsize=7)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.set_title(title, fontsize=9)
        axes.grid(True, alpha=0.3, zorder=1)
        figure.tight_layout()
        folder = os.path.dirname(os.path.abspath(path))
        tmp = os.path.join(folder, f".{os.path.basename(path)}.partial.png")
        figure.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(figure)
    return path
