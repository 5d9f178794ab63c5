"""PNG plots of run results (lines, scatter). matplotlib is optional (``pip install matplotlib``,
or the package's ``[plot]`` extra): without it nothing is drawn and the functions return None, so
the caller can say how to get the plot (:data:`PLOT_HINT`)."""
from __future__ import annotations

import importlib.util
import io
from typing import Mapping, Optional, Sequence, Tuple

from pimm.utils.file_io import atomic_write_bytes

__all__ = ["PLOT_HINT", "plotting_available", "plot_lines", "save_scatter_plot"]

#: what to tell a user who wants the plots
PLOT_HINT = "install matplotlib (python -m pip install matplotlib, or pip install -e .[plot]) for PNG plots"

Series = Tuple[Sequence[float], Sequence[float]]


def plotting_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def plot_lines(path: str, series: Mapping[str, Series], *, title: str, xlabel: str, ylabel: str,
               integer_x: bool = False) -> Optional[str]:
    """Write ``path`` (PNG, atomically): one line with markers per ``label -> (xs, ys)``. Returns
    ``path``, or None when matplotlib is missing."""
    if not plotting_available():
        return None
    from matplotlib.ticker import MaxNLocator

    figure, axes = _figure((6.4, 4.0), 100)
    for label, (xs, ys) in series.items():
        axes.plot(list(xs), list(ys), marker="o", markersize=3, label=label)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    if integer_x:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(series) > 1:
        axes.legend()
    _save(figure, path)
    return path


def save_scatter_plot(path: str, x: Sequence[float], y: Sequence[float], *, xlabel: str, ylabel: str,
                      title: str, labels: Optional[Sequence[str]] = None) -> Optional[str]:
    """Write ``path`` (PNG, atomically): a scatter plot of ``(x, y)`` with each point annotated by
    ``labels`` (if given). Returns ``path``, or None when matplotlib is missing."""
    if not plotting_available():
        return None
    figure, axes = _figure((5.5, 4.5), 120)
    axes.scatter(x, y, s=28, color="tab:blue", zorder=2)
    for i, label in enumerate(labels or ()):
        axes.annotate(label, (x[i], y[i]), textcoords="offset points", xytext=(4, 3), fontsize=7)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=9)
    axes.grid(True, alpha=0.3, zorder=1)
    _save(figure, path)
    return path


def _figure(size: Tuple[float, float], dpi: int):
    # the object API with the Agg canvas: no pyplot, so no global state and no display needed
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=dpi, tight_layout=True)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _save(figure, path: str) -> None:
    png = io.BytesIO()
    figure.savefig(png, format="png")
    atomic_write_bytes(png.getvalue(), path)
