"""PNG plots: written atomically when matplotlib is there, skipped (None) when it is not."""
import os

import pytest

import pimm.utils.plots as plots


def test_plot_lines_writes_a_png_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    path = str(tmp_path / "curve.png")
    series = {"best": ([0, 1, 2], [10.0, 12.5, 12.5]), "mean": ([0, 1, 2], [8.0, 9.0, 11.0])}
    assert plots.plot_lines(path, series, title="t", xlabel="generation", ylabel="top-1", integer_x=True) == path
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["curve.png"]  # no temporary file left behind


def test_without_matplotlib_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "plotting_available", lambda: False)
    path = str(tmp_path / "curve.png")
    assert plots.plot_lines(path, {"a": ([0], [1.0])}, title="t", xlabel="x", ylabel="y") is None
    assert not os.path.exists(path) and "pip install matplotlib" in plots.PLOT_HINT
