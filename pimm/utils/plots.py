"""PNG line plots of run results. matplotlib is optional (``pip install matplotlib``, or the
package's ``[plot]`` extra): without it nothing is drawn and :func:`plot_lines` returns None, so the
caller can say how to get the plot."""
from __future__ import annotations

import importlib.util
import io
from typing import Mapping, Optional, Sequence, Tuple

from pimm.utils.file_io import atomic_write_bytes

__all__ = ["PLOT_HINT", "plotting_available", "plot_lines"]

#: what to tell a user who wants the plots
PLOT_HINT = "install matplotlib (python -m pip install matplotlib) for PNG plots"

Series = Tuple[Sequence[float], Sequence[float]]


def plotting_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def plot_lines(path: str, series: Mapping[str, Series], *, title: str, xlabel: str, ylabel: str,
               integer_x: bool = False) -> Optional[str]:
    """Write ``path`` (PNG, atomically): one line with markers per ``label -> (xs, ys)``. Returns
    ``path``, or None when matplotlib is missing."""
    if not plotting_available():
        return None
    # the object API with the Agg canvas: no pyplot, so no global state and no display needed
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(6.4, 4.0), dpi=100, tight_layout=True)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
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
    png = io.BytesIO()
    figure.savefig(png, format="png")
    atomic_write_bytes(png.getvalue(), path)
    return path
