"""pimm.utils.plots: line plots, training curves and the board as PNG files, written atomically;
matplotlib stays optional."""
import csv
import json
import math
import os
import sys

import numpy as np
import pytest
from PIL import Image

import pimm.utils.plots as plots
from pimm.utils import update_summary
from pimm.utils.plots import (BOARD_PLOT_FILE, CURVES_FILE, PlotsUnavailable, plot_board, plot_run,
                              read_summary)

BOARD = {
    "paths": [{"arch": [[0], [1], [0], [2], [0], [3], [0]], "flops": 93.8, "params": 0.95, "prec1": 62.5},
              {"arch": [[0], [2], [0], [5], [0], [0], [0]], "flops": 89.3, "params": 0.87, "prec1": 59.4}],
    "best_in_range": {"arch": [[0], [1], [0], [2], [0], [3], [0]], "flops": 93.8, "params": 0.95,
                      "prec1": 62.5, "val_prec1": 55.0},
    "validated": [{"arch": [[0], [0], [0], [0], [0], [0], [0]], "flops": 80.1, "params": 0.8, "prec1": 48.0}],
    "flops_minimum": 0.0, "flops_maximum": 100.0, "epoch": 2, "resolution": 224,
}


def _search_run(folder, epochs=3):
    for epoch in range(epochs):
        update_summary(epoch, {"loss": 2.3 - 0.2 * epoch, "prec1": 20.0 + 10 * epoch,
                               "kd_loss": math.nan if epoch == 0 else 2.0},
                       {"loss": 2.2 - 0.2 * epoch, "prec1": 25.0 + 10 * epoch,
                        "best_prec1": math.nan if epoch == 0 else 40.0}, str(folder / "summary.csv"))
    (folder / "board.json").write_text(json.dumps(BOARD))


def _is_png(path):
    with Image.open(path) as image:
        return image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200


def test_plot_lines_writes_a_png_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    path = str(tmp_path / "curve.png")
    series = {"best": ([0, 1, 2], [10.0, 12.5, 12.5]), "mean": ([0, 1, 2], [8.0, 9.0, 11.0])}
    assert plots.plot_lines(path, series, title="t", xlabel="generation", ylabel="top-1", integer_x=True) == path
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["curve.png"]  # no temporary file left behind


def test_without_matplotlib_plot_lines_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "plotting_available", lambda: False)
    path = str(tmp_path / "curve.png")
    assert plots.plot_lines(path, {"a": ([0], [1.0])}, title="t", xlabel="x", ylabel="y") is None
    assert not os.path.exists(path) and "pip install matplotlib" in plots.PLOT_HINT


def test_read_summary_takes_the_last_row_of_a_repeated_epoch(tmp_path):
    path = tmp_path / "summary.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerows([["epoch", "train_loss", "eval_prec1"], [0, 2.0, 10], [1, 1.5, ""], [1, 1.4, 30]])
    columns = read_summary(str(path))
    assert columns["epoch"] == [0.0, 1.0] and columns["train_loss"] == [2.0, 1.4]
    assert columns["eval_prec1"] == [10.0, 30.0]


def test_plot_run_draws_curves_and_board(tmp_path):
    pytest.importorskip("matplotlib")
    _search_run(tmp_path)
    written = plot_run(str(tmp_path), num_classes=10)
    assert written == [str(tmp_path / CURVES_FILE), str(tmp_path / BOARD_PLOT_FILE)]
    assert all(_is_png(path) for path in written)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["board.json", "summary.csv", CURVES_FILE,
                                                                 BOARD_PLOT_FILE])  # no temporaries left
    # a retrain folder has no board.json: the curves only
    retrain = tmp_path / "retrain"
    retrain.mkdir()
    update_summary(0, {"loss": 2.0}, {"loss": 1.9, "prec1": 30.0, "prec5": 80.0}, str(retrain / "summary.csv"))
    assert plot_run(str(retrain)) == [str(retrain / CURVES_FILE)]


def test_board_plot_marks_the_chosen_path(tmp_path):
    pytest.importorskip("matplotlib")
    with_choice = np.asarray(Image.open(plot_board(BOARD, str(tmp_path / "a.png"))).convert("RGB"))
    without = np.asarray(Image.open(plot_board(dict(BOARD, best_in_range=None),
                                               str(tmp_path / "b.png"))).convert("RGB"))
    red = (with_choice[..., 0] > 200) & (with_choice[..., 1] < 80) & (with_choice[..., 2] < 80)
    assert red.sum() > 50 and red.sum() > ((without[..., 0] > 200) & (without[..., 1] < 80)).sum() + 50


def test_without_matplotlib_plots_say_how_to_get_them(tmp_path, monkeypatch):
    _search_run(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(PlotsUnavailable, match="pip install matplotlib"):
        plot_run(str(tmp_path))
    assert not (tmp_path / CURVES_FILE).exists()


def test_a_folder_without_summary_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="summary.csv does not exist"):
        plot_run(str(tmp_path))
