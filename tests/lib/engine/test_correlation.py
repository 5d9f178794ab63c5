"""``correlation`` mode: paths of a supernet checkpoint evaluated with inherited weights, their
stand-alone accuracies read from retrain run folders or a CSV, the coefficients and plot."""
import ast
import csv
import json
import os

import paddle
import pytest

from lib.config import ConfigError, load_config, shipped_config
from lib.engine import engine_for
from lib.engine import correlation as correlation_engine
from lib.engine.common import RunError, finish_run, prepare_run
from lib.engine.correlation import (CorrelationOptions, StandAlone, read_standalone_csv, read_standalone_run,
                                    supernet_config)
from lib.engine.search import build_search_supernet
from pimm.utils import CheckpointSaver, update_summary
from pimm.utils.correlation import rank_correlations
from pimm.utils.plots import plotting_available

SEARCH = shipped_config("train", "demo.yaml")
CORRELATION = shipped_config("correlation", "demo.yaml")
STANDALONE = shipped_config("correlation", "demo_standalone.yaml")
SEARCH_OVERRIDES = ["DATASET.NUM_CLASSES", "4", "DATASET.IMAGE_SIZE", "32", "SUPERNET.SLICE", "2"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A supernet checkpoint as a search saves it (run config included): the demo space, 4 classes,
    32 px, random weights."""
    folder = str(tmp_path_factory.mktemp("search"))
    cfg = load_config(SEARCH, SEARCH_OVERRIDES)
    paddle.seed(0)
    supernet, _, _ = build_search_supernet(cfg)
    optimizer = paddle.optimizer.SGD(learning_rate=0.1, parameters=supernet.parameters())
    CheckpointSaver(supernet, optimizer, args=cfg, checkpoint_dir=folder).save_checkpoint(0, metric=1.0)
    return os.path.join(folder, "last.pdparams")


def _config(data, tmp_path, checkpoint, *overrides):
    return load_config(CORRELATION, ["DATA_DIR", data, "SAVE_PATH", str(tmp_path), "WORKERS", "0",
                                     "DATASET.BATCH_SIZE", "4", "CORRELATION.CHECKPOINT", checkpoint,
                                     "CORRELATION.NUM_PATHS", "3", "CORRELATION.BN_BATCHES", "2", *overrides])


def _run(cfg):
    ctx = prepare_run(cfg, "correlation")
    try:
        return engine_for("correlation", "cream").run(ctx), ctx.run_dir
    finally:
        finish_run(ctx)


def _rows(run_dir):
    with open(os.path.join(run_dir, "correlation.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _standalone_run(folder, arch, accuracies, *overrides):
    """A retrain run folder as tools/main.py retrain leaves it: config.yaml and summary.csv."""
    os.makedirs(folder)
    cfg = load_config(STANDALONE, ["NET.INPUT_ARCH", str(arch), "DATASET.NUM_CLASSES", "4",
                                   "DATASET.IMAGE_SIZE", "32", *overrides])
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    for epoch, top1 in enumerate(accuracies):
        update_summary(epoch, {"loss": 1.0}, {"loss": 1.0, "prec1": top1, "prec5": 100.0},
                       os.path.join(folder, "summary.csv"))


def test_paths_then_coefficients(demo_data_factory, tmp_path, checkpoint):
    data = demo_data_factory(num_classes=4, train_per_class=6, val_per_class=3, image_size=32)
    # step 1: random paths inside the FLOPs range, evaluated, and a retrain command for each
    result, run_dir = _run(_config(data, tmp_path, checkpoint, "MODEL", "step1"))
    rows = _rows(run_dir)
    paths = [ast.literal_eval(r["arch"]) for r in rows]
    assert result["paths"] == 3 and len({str(p) for p in paths}) == 3
    assert all(0.0 <= float(r["mflops"]) <= 100.0 and 0.0 <= float(r["supernet_top1"]) <= 100.0 for r in rows)
    assert all(r["standalone_top1"] == "" for r in rows)
    with open(os.path.join(run_dir, "retrain_paths.sh")) as f:
        commands = [line for line in f if line.startswith("python tools/main.py retrain")]
    assert len(commands) == 3 and all("NET.EXACT_ARCH True" in c and "MODEL step1_path_0" in c for c in commands)
    assert f"NET.INPUT_ARCH '{paths[1]}'" in commands[1]
    assert not os.path.exists(os.path.join(run_dir, "correlation.json"))

    # step 2: the same paths trained alone (their run folders), best validation top-1 of each
    best = [40.0, 70.0, 55.0]
    for i, (arch, top1) in enumerate(zip(paths, best)):
        _standalone_run(str(tmp_path / "standalone" / f"step1_path_{i:02d}"), arch, [top1 - 10.0, top1, top1 - 5.0])
    result, run_dir = _run(_config(data, tmp_path, checkpoint, "MODEL", "step2",
                                   "CORRELATION.RUNS", f"['{tmp_path}/standalone/step1_path_*']"))
    rows2 = _rows(run_dir)
    assert [ast.literal_eval(r["arch"]) for r in rows2] == paths
    assert [float(r["standalone_top1"]) for r in rows2] == best
    # the same batches recalibrate the same paths: the same inherited accuracies
    inherited = [float(r["supernet_top1"]) for r in rows2]
    assert inherited == pytest.approx([float(r["supernet_top1"]) for r in rows])
    with open(os.path.join(run_dir, "correlation.json")) as f:
        saved = json.load(f)
    expected = rank_correlations(best, inherited)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, nan_ok=True)
        assert saved[key] == pytest.approx(value, nan_ok=True)
    assert saved["paths"] == 3 and saved["bn_batches"] == 2
    assert os.path.isfile(os.path.join(run_dir, "correlation.png")) == plotting_available()


def test_a_run_that_built_another_network_is_refused(tmp_path):
    arch = [[0], [5], [0], [0], [0], [0], [0]]  # stage 1's single layer: k7e6, its template is k3e4
    _standalone_run(str(tmp_path / "quirk"), arch, [50.0], "NET.EXACT_ARCH", "False")
    with pytest.raises(RunError, match="NET.EXACT_ARCH True"):
        read_standalone_run(str(tmp_path / "quirk"))
    _standalone_run(str(tmp_path / "exact"), arch, [50.0, 61.5])
    assert read_standalone_run(str(tmp_path / "exact")) == StandAlone(arch, 61.5, str(tmp_path / "exact"), 32)
    with pytest.raises(RunError, match="no config.yaml"):
        read_standalone_run(str(tmp_path))
    _standalone_run(str(tmp_path / "unfinished"), arch, [], "NET.EXACT_ARCH", "True")
    with pytest.raises(RunError, match="neither summary.csv nor metrics.json"):
        read_standalone_run(str(tmp_path / "unfinished"))
    (tmp_path / "unfinished" / "metrics.json").write_text('{"top5": 90.0}')  # no top1
    with pytest.raises(RunError, match="cannot read the top-1 of .*unfinished: KeyError"):
        read_standalone_run(str(tmp_path / "unfinished"))


def test_standalone_csv(tmp_path):
    path = tmp_path / "alone.csv"
    path.write_text('arch,top1\n"[[0], [1], [2], [3], [4], [5], [0]]",61.5\n"[[0], [0], [0], [0], [0], [0], [0]]",40\n')
    assert [(r.arch[1], r.top1) for r in read_standalone_csv(str(path))] == [([1], 61.5), ([0], 40.0)]
    path.write_text("arch,accuracy\n")
    with pytest.raises(RunError, match="columns arch and top1"):
        read_standalone_csv(str(path))
    path.write_text('arch,top1\n"[[0], [9], [2], [3], [4], [5], [0]]",61.5\n')
    with pytest.raises(RunError, match="line 2"):
        read_standalone_csv(str(path))


def test_options_and_supernet_keys(tmp_path):
    with pytest.raises(ConfigError, match="CORRELATION.CHECKPOINT"):
        CorrelationOptions.from_config(load_config(CORRELATION, ["CORRELATION.CHECKPOINT", ""]))
    with pytest.raises(ConfigError, match="both set"):
        CorrelationOptions.from_config(load_config(CORRELATION, ["CORRELATION.CSV", "a.csv",
                                                                 "CORRELATION.RUNS", "['x']"]))
    with pytest.raises(ConfigError, match="BOARD_JSON"):
        CorrelationOptions.from_config(load_config(CORRELATION, ["CORRELATION.PATHS", "board"]))
    args = {"SUPERNET": {"FLOPS_MINIMUM": 0, "FLOPS_MAXIMUM": 300, "SLICE": 2}, "DATASET": {"NUM_CLASSES": 7}}
    cfg = supernet_config(load_config(CORRELATION), args)
    assert (cfg.SUPERNET.FLOPS_MAXIMUM, cfg.SUPERNET.SLICE, cfg.DATASET.NUM_CLASSES) == (300.0, 2, 7)
    assert cfg.DATASET.IMAGE_SIZE == load_config(CORRELATION).DATASET.IMAGE_SIZE  # not stored: kept


def test_paths_the_supernet_cannot_run_and_duplicates_are_refused(demo_data_factory, tmp_path, checkpoint):
    data = demo_data_factory(num_classes=4, train_per_class=6, val_per_class=3, image_size=32)
    path = tmp_path / "alone.csv"
    path.write_text('arch,top1\n"[[0], [1, 1], [2], [3], [4], [5], [0]]",61.5\n"[[0], [0], [0], [0], [0], [0], [0]]",40\n')
    with pytest.raises(RunError, match="not one of this supernet's"):
        _run(_config(data, tmp_path, checkpoint, "CORRELATION.CSV", str(path)))
    path.write_text('arch,top1\n"[[0], [0], [0], [0], [0], [0], [0]]",61.5\n"[[0], [0], [0], [0], [0], [0], [0]]",40\n')
    with pytest.raises(RunError, match="two stand-alone accuracies"):
        _run(_config(data, tmp_path, checkpoint, "CORRELATION.CSV", str(path)))
    with pytest.raises(RunError, match="no run folder matches"):
        _run(_config(data, tmp_path, checkpoint, "CORRELATION.RUNS", f"['{tmp_path}/nothing_*']"))


def test_the_mode_is_registered():
    assert engine_for("correlation", "cream") is correlation_engine
