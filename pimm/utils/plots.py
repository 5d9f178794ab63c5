"""PNG plots of run results. matplotlib is optional (``pip install matplotlib``, or the package's
``[plot]`` extra): without it nothing is drawn; ``plot_lines`` and ``save_scatter_plot`` return
None and the run-folder plots raise ``PlotsUnavailable``, so that callers can say how to get them
(:data:`PLOT_HINT`) and carry on.

* ``plot_lines``: one figure of labelled lines (e.g. an evolution's best top-1 per generation);
  ``save_scatter_plot``: annotated points (e.g. a correlation study).
* ``training_curves.png``: per epoch, the losses (train, validation, KD when present) and the
  top-1 accuracies (train; validation, i.e. the mean of the validated paths in a search; the
  board's best path; the EMA weights'), with the chance level when the number of classes is known.
* ``board.png`` (when ``board.json`` exists): MFLOPs against top-1 of the board's paths (the
  accuracy they were ranked by), the validated random paths and the chosen path highlighted,
  with the FLOPs budget shaded.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot: no global state, no
display) and written atomically.
"""
from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from pimm.utils.file_io import atomic_write_bytes
from pimm.utils.summary import SUMMARY_FILE

__all__ = ["PlotsUnavailable", "PLOT_HINT", "CURVES_FILE", "BOARD_PLOT_FILE", "plotting_available",
           "plot_lines", "save_scatter_plot", "read_summary", "plot_training_curves", "plot_board",
           "plot_run", "BOARD_FILE"]

#: what to tell a user who wants the plots
PLOT_HINT = "install matplotlib (python -m pip install matplotlib, or pip install -e .[plot]) for PNG plots"
CURVES_FILE = "training_curves.png"
BOARD_PLOT_FILE = "board.png"
#: the prioritized board a Cream search writes into its run folder (read here to plot it)
BOARD_FILE = "board.json"

Series = Tuple[Sequence[float], Sequence[float]]

# summary.csv column -> legend label, in drawing order
_LOSS_COLUMNS = (("train_loss", "train"), ("eval_loss", "validation"), ("train_kd_loss", "KD (train)"))
_TOP1_COLUMNS = (("train_prec1", "train"), ("eval_prec1", "validation"),
                 ("eval_best_prec1", "validation, board's best path"), ("eval_ema_prec1", "validation, EMA"))
# a search trains one sampled path per step and validates several random paths
_SEARCH_LABELS = {"train_prec1": "train (sampled paths)", "eval_loss": "validation, random paths (mean)",
                  "eval_prec1": "validation, random paths (mean)"}


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed; the message says how to install it."""


def plotting_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _figure(size: Tuple[float, float], dpi: int = 100):
    """A matplotlib Figure on the Agg canvas (matplotlib must be there)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=dpi, tight_layout=True)
    FigureCanvasAgg(figure)
    return figure


def _run_folder_figure(size: Tuple[float, float]):
    """``_figure`` for the run-folder plots: ``PlotsUnavailable`` without matplotlib."""
    if not plotting_available():
        raise PlotsUnavailable(PLOT_HINT)
    return _figure(size)


def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def read_summary(path: str) -> Dict[str, List[float]]:
    """``summary.csv`` as columns of floats (NaN where a value is missing or not a number). A run
    resumed from an earlier epoch may have written an epoch twice: the last row of it wins."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    by_epoch = {int(_number(r.get("epoch"))): r for r in rows if math.isfinite(_number(r.get("epoch")))}
    epochs = sorted(by_epoch)
    columns = {key for row in rows for key in row if key}
    return {key: [_number(by_epoch[e].get(key)) for e in epochs] for key in sorted(columns)}


def _save(figure, path: str) -> str:
    png = io.BytesIO()
    figure.savefig(png, format="png")
    atomic_write_bytes(png.getvalue(), path)  # a reader never sees half a PNG
    return path


def plot_lines(path: str, series: Mapping[str, Series], *, title: str, xlabel: str, ylabel: str,
               integer_x: bool = False) -> Optional[str]:
    """Write ``path`` (PNG): one line with markers per ``label -> (xs, ys)``. Returns ``path``, or
    None when matplotlib is missing."""
    if not plotting_available():
        return None
    from matplotlib.ticker import MaxNLocator

    figure = _figure((6.4, 4.0))
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
    return _save(figure, path)


def save_scatter_plot(path: str, x: Sequence[float], y: Sequence[float], *, xlabel: str, ylabel: str,
                      title: str, labels: Optional[Sequence[str]] = None) -> Optional[str]:
    """Write ``path`` (PNG, atomically): a scatter plot of ``(x, y)`` with each point annotated by
    ``labels`` (if given). Returns ``path``, or None when matplotlib is missing."""
    if not plotting_available():
        return None
    figure = _figure((5.5, 4.5), 120)
    axes = figure.add_subplot()
    axes.scatter(x, y, s=28, color="tab:blue", zorder=2)
    for i, label in enumerate(labels or ()):
        axes.annotate(label, (x[i], y[i]), textcoords="offset points", xytext=(4, 3), fontsize=7)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=9)
    axes.grid(True, alpha=0.3, zorder=1)
    return _save(figure, path)


def plot_training_curves(summary: Mapping[str, Sequence[float]], path: str, title: str = "",
                         num_classes: Optional[int] = None) -> str:
    """Loss and top-1 per epoch (see the module doc) into ``path``; returns ``path``."""
    fig = _run_folder_figure((10, 4))
    from matplotlib.ticker import MaxNLocator

    epochs = list(summary.get("epoch", []))
    searched = "eval_best_prec1" in summary  # a search validates random paths and the board's best
    ax_loss, ax_top1 = fig.subplots(1, 2)
    for ax, columns in ((ax_loss, _LOSS_COLUMNS), (ax_top1, _TOP1_COLUMNS)):
        for key, label in columns:
            values = summary.get(key)
            if values is not None and any(math.isfinite(v) for v in values):
                if searched:
                    label = _SEARCH_LABELS.get(key, label)
                ax.plot(epochs, values, marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if num_classes:
        ax_loss.axhline(math.log(num_classes), color="grey", linestyle=":",
                        label=f"ln({num_classes}): uniform guess")
        ax_top1.axhline(100.0 / num_classes, color="grey", linestyle=":", label="chance")
    ax_loss.set_ylabel("loss")
    ax_top1.set_ylabel("top-1 (%)")
    for ax in (ax_loss, ax_top1):
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _short(arch: Sequence[Sequence[int]]) -> str:
    inner = arch[1:-1] if len(arch) > 2 else arch
    return " ".join("".join(str(c) for c in stage) for stage in inner)


def plot_board(board: Mapping, path: str, title: str = "") -> str:
    """MFLOPs against top-1 from a ``board.json`` dict (``paths``, ``best_in_range``,
    ``flops_minimum``/``flops_maximum`` and, when present, ``validated``: paths with their
    validation top-1) into ``path``; returns ``path``. The chosen path is drawn at its validation
    top-1 when it has one (``val_prec1``), beside the validated random paths."""
    fig = _run_folder_figure((7, 5.2))
    ax = fig.subplots()
    validated = board.get("validated") or []
    paths = board.get("paths") or []
    flops = [float(p["flops"]) for p in list(paths) + list(validated)]
    low, high = board.get("flops_minimum"), board.get("flops_maximum")
    if low is not None and high is not None:
        ax.axvspan(float(low), float(high), color="tab:green", alpha=0.07, label="FLOPs budget")
        if flops:  # the budget often starts at 0: show the paths, not the empty part of it
            margin = max(2.0, 0.1 * (max(flops) - min(flops)))
            ax.set_xlim(min(flops) - margin, max(max(flops), float(high)) + margin)
    if validated:
        ax.scatter([p["flops"] for p in validated], [p["prec1"] for p in validated], marker="x",
                   color="grey", label="random paths (validation top-1)")
    if paths:
        ax.scatter([p["flops"] for p in paths], [p["prec1"] for p in paths], color="tab:blue",
                   label="board paths (top-1 on their training batch)")
    chosen = board.get("best_in_range")
    if chosen:
        validated_top1 = chosen.get("val_prec1")
        label = f"chosen: {_short(chosen['arch'])}, {chosen['flops']:.1f} MFLOPs"
        label += (f" (validation top-1 {validated_top1:.1f} %)" if validated_top1 is not None
                  else " (top-1 on its training batch)")
        ax.scatter([chosen["flops"]], [chosen["prec1"] if validated_top1 is None else validated_top1],
                   marker="*", s=250, color="tab:red", edgecolor="black", zorder=3, label=label)
    resolution = board.get("resolution")
    ax.set_xlabel(f"MFLOPs{f' at {resolution} px' if resolution else ''}")
    ax.set_ylabel("top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)  # below: no point hidden
    epoch = board.get("epoch")
    ax.set_title(title or (f"prioritized board after epoch {epoch}" if epoch is not None else "board"))
    return _save(fig, path)


def plot_run(run_dir: str, title: str = "", num_classes: Optional[int] = None) -> List[str]:
    """Draw the plots of a run folder (``summary.csv``, and ``board.json`` when present) into it;
    returns the files written. Raises ``PlotsUnavailable`` without matplotlib and
    ``FileNotFoundError`` when the folder has no ``summary.csv`` yet."""
    summary_path = os.path.join(run_dir, SUMMARY_FILE)
    if not os.path.isfile(summary_path):
        raise FileNotFoundError(f"{summary_path} does not exist: is {run_dir} a run folder with at "
                                f"least one finished epoch?")
    written = [plot_training_curves(read_summary(summary_path), os.path.join(run_dir, CURVES_FILE),
                                    title=title or os.path.basename(os.path.normpath(run_dir)),
                                    num_classes=num_classes)]
    board_path = os.path.join(run_dir, BOARD_FILE)
    if os.path.isfile(board_path):
        try:
            with open(board_path) as f:
                written.append(plot_board(json.load(f), os.path.join(run_dir, BOARD_PLOT_FILE)))
        except (ValueError, KeyError, TypeError) as err:  # damaged, or not a search's board
            raise ValueError(f"{board_path} is not a board.json a search wrote ({err!r})") from None
    return written
