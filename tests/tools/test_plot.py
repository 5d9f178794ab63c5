"""tools/plot.py RUN_FOLDER: re-draws a run folder's plots; errors are one line and status 2."""
import sys

import pytest

from pimm.utils import update_summary


def test_plot_tool_draws_a_run_folder(tmp_path, capsys, load_tool):
    pytest.importorskip("matplotlib")
    update_summary(0, {"loss": 2.0, "prec1": 20.0}, {"loss": 1.9, "prec1": 30.0}, str(tmp_path / "summary.csv"))
    (tmp_path / "config.yaml").write_text("DATASET:\n  NUM_CLASSES: 10\n")
    assert load_tool("plot").main([str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "training_curves.png")
    assert (tmp_path / "training_curves.png").stat().st_size > 1000


def test_plot_tool_errors(tmp_path, capsys, load_tool, monkeypatch):
    tool = load_tool("plot")
    assert tool.main([str(tmp_path / "missing")]) == 2
    assert "summary.csv does not exist" in capsys.readouterr().err
    update_summary(0, {"loss": 2.0}, {"loss": 1.9}, str(tmp_path / "summary.csv"))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert tool.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: install matplotlib (python -m pip install matplotlib, or pip install -e .[plot]) for PNG plots")


def test_plot_tool_names_a_damaged_board(tmp_path, capsys, load_tool):
    pytest.importorskip("matplotlib")
    update_summary(0, {"loss": 2.0, "prec1": 20.0}, {"loss": 1.9, "prec1": 30.0}, str(tmp_path / "summary.csv"))
    (tmp_path / "board.json").write_text('{"paths": [')
    assert load_tool("plot").main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'board.json'} is not a board.json a search wrote") and "\n" not in err
