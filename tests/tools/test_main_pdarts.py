"""METHOD pdarts through tools/main.py: the P-DARTS search on tiny settings (stages pruning 8 -> 5 -> 3,
genotypes.json, alphas logged, resume after a kill mid-stage), the retrain of a searched genotype
with the auxiliary head and drop path, its test, and the errors users can make."""
import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest

from lib.darts import PRIMITIVES, derive_genotype, load_genotypes
from pimm.data import write_cifar_batch
from pimm.models import read_checkpoint_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(REPO, "tools")
CONFIGS = os.path.join(REPO, "experiments", "configs", "pdarts")
SEARCH = os.path.join(CONFIGS, "demo_search.yaml")
RETRAIN = os.path.join(CONFIGS, "demo_retrain.yaml")
# Three stages of 2, 2 and 3 cells with 2 channels, 2 epochs each (the first the weights only), on
# 15 + 15 images in batches of 5: a few seconds per stage. The architecture rate is raised so the
# alphas move visibly in 3 steps.
TINY_SEARCH = ["WORKERS", 0, "LOG_INTERVAL", 1, "DATASET.BATCH_SIZE", 5, "DARTS.SEARCH.CELLS", "[2, 2, 3]",
               "DARTS.SEARCH.CHANNELS", "[2, 2, 2]", "DARTS.SEARCH.EPOCHS", 2, "DARTS.SEARCH.WEIGHTS_ONLY_EPOCHS", 1,
               "DARTS.SEARCH.VAL_EPOCHS", 1, "DARTS.SEARCH.ARCH_LR", 0.05]
EPOCHS = 6  # 3 stages x 2


def _load_main():
    spec = importlib.util.spec_from_file_location("tools_main_pdarts", os.path.join(TOOLS, "main.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def main():
    """tools/main.py's main(argv), in-process."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(TOOLS)  # the scripts import tools/_entry.py
        yield _load_main().main


@pytest.fixture(scope="module")
def search_dir(main, demo_cifar_dir, tmp_path_factory):
    """An uninterrupted tiny search; returns its run folder."""
    root = tmp_path_factory.mktemp("pdarts")
    args = ["train", SEARCH, *TINY_SEARCH, "DATA_DIR", demo_cifar_dir, "SAVE_PATH", root, "MODEL", "full"]
    assert main([str(a) for a in args]) == 0
    return str(root / "full")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _read(path):
    with open(path) as f:
        return f.read()


def test_stages_drop_operations_8_5_3_on_growing_networks(search_dir):
    with open(os.path.join(search_dir, "stages.json")) as f:
        stages = json.load(f)
    assert [(s["stage"], s["cells"], s["ops_per_edge"], s["skip_dropout"]) for s in stages] == [
        (0, 2, 8, 0.0), (1, 2, 5, 0.4), (2, 3, 3, 0.7)]
    for cell in ("normal", "reduce"):
        ops = [s[f"ops_{cell}"] for s in stages]
        assert all(len(edge) == 8 for edge in ops[0]) and len(ops[0]) == 14
        for before, after, kept in zip(ops, ops[1:], (5, 3)):
            for edge, (old, new) in enumerate(zip(before, after)):
                assert len(new) == kept and set(new) < set(old), (cell, edge)
        # after each stage the operations with the lowest final weights were the ones switched off
        for stage, after in zip(stages, ops[1:]):
            for edge, (names, weights) in enumerate(zip(stage[f"ops_{cell}"], stage[f"weights_{cell}"])):
                kept = {names[i] for i in np.argsort(weights, kind="stable")[len(names) - len(after[edge]):]}
                assert kept == set(after[edge])
    log = _read(os.path.join(search_dir, "train.log"))
    assert "stage 1 done: 8 -> 5 operations per edge" in log and "stage 2 done: 5 -> 3 operations per edge" in log
    assert "stage 3/3: 3 cells, 2 initial channels, 3 operations per edge" in log


def test_genotypes_json_holds_valid_genotypes_of_the_last_alphas(search_dir):
    genotypes = load_genotypes(os.path.join(search_dir, "genotypes.json"))  # validates every entry
    assert list(genotypes) == ["recommended"] + [f"max_skip_{k}" for k in range(8, -1, -1)]
    assert genotypes["recommended"] == genotypes["max_skip_2"]
    for limit in range(9):
        normal = genotypes[f"max_skip_{limit}"].normal
        assert sum(op == "skip_connect" for op, _ in normal) <= limit
        assert "none" not in {op for op, _ in normal + genotypes[f"max_skip_{limit}"].reduce}
    # the last checkpoint's alphas and switches give the same genotype (lib.darts.pdarts)
    state = read_checkpoint_file(os.path.join(search_dir, "last.pdparams"))
    assert (state["stage"], state["stage_epoch"], state["epoch"]) == (2, 1, EPOCHS - 1)
    weights = state["state_dict"]
    expected = derive_genotype(weights["alphas_normal"], weights["alphas_reduce"], state["switches_normal"],
                               state["switches_reduce"], max_skip=2)
    assert genotypes["recommended"] == expected
    if importlib.util.find_spec("matplotlib"):
        with open(os.path.join(search_dir, "cells.png"), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_alphas_and_metrics_are_logged_every_epoch(search_dir):
    rows = _rows(os.path.join(search_dir, "summary.csv"))
    assert [int(r["epoch"]) for r in rows] == list(range(EPOCHS))
    assert [int(r["train_stage"]) for r in rows] == [0, 0, 1, 1, 2, 2]
    assert [r["train_arch_loss"] == "nan" for r in rows] == [True, False] * 3  # weights only in epoch 0
    assert [r["eval_prec1"] == "nan" for r in rows] == [True, False] * 3  # VAL_EPOCHS 1
    alphas = _rows(os.path.join(search_dir, "alphas.csv"))
    per_epoch = [2 * 14 * ops for ops in (8, 8, 5, 5, 3, 3)]
    assert [sum(int(r["epoch"]) == e for r in alphas) for e in range(EPOCHS)] == per_epoch
    assert {r["op"] for r in alphas} == set(PRIMITIVES)
    for epoch in range(EPOCHS):
        for cell in ("normal", "reduce"):
            for edge in range(14):
                weights = [float(r["weight"]) for r in alphas
                           if int(r["epoch"]) == epoch and r["cell"] == cell and int(r["edge"]) == edge]
                assert sum(weights) == pytest.approx(1.0, abs=1e-6)
    # the alphas start as 1e-3 normals and stay there while only the weights train, then move
    first, second = ([abs(float(r["alpha"])) for r in alphas if int(r["epoch"]) == e and r["cell"] == "reduce"]
                     for e in (0, 1))
    assert max(first) < 0.01 and max(second) > 0.02
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(os.path.join(search_dir, "runs")))
    log = _read(os.path.join(search_dir, "train.log"))
    assert "softmax(alpha) after epoch 5 (stage 3, epoch 2 of it)" in log
    assert "reduce edge 13 (node 3 <- 4): " in log


def _wait_for_epoch(proc, index_path, epoch, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            with open(index_path) as f:
                if json.load(f)["checkpoints"][0]["epoch"] >= epoch:
                    return
        except (OSError, ValueError, KeyError, IndexError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of epoch {epoch} before the search ended or {timeout} s passed: "
                         f"exit {proc.poll()}")


@pytest.mark.e2e  # kills a tools/main.py subprocess
def test_search_killed_mid_stage_resumes_to_the_uninterrupted_result(search_dir, main, demo_cifar_dir, tmp_path):
    args = ["train", SEARCH, *TINY_SEARCH, "DATA_DIR", demo_cifar_dir, "SAVE_PATH", tmp_path, "MODEL", "killed"]
    args = [str(a) for a in args]
    proc = subprocess.Popen([sys.executable, os.path.join(TOOLS, "main.py"), *args], cwd=tmp_path,
                            env=dict(os.environ, GLOG_minloglevel="2"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    run_dir = tmp_path / "killed"
    try:
        _wait_for_epoch(proc, run_dir / "checkpoint_index.json", epoch=2)  # stage 2's first epoch
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "genotypes.json").exists()

    assert main(args) == 0  # AUTO_RESUME: the same command goes on
    log = _read(run_dir / "train.log")
    assert "resumed from" in log and "stage 2 with 1 of its 2 epochs done; the search goes on at its epoch 3" in log

    for name in ("genotypes.json", "stages.json", "summary.csv", "alphas.csv"):
        assert _read(run_dir / name) == _read(os.path.join(search_dir, name)), name
    resumed = read_checkpoint_file(str(run_dir / "last.pdparams"))
    full = read_checkpoint_file(os.path.join(search_dir, "last.pdparams"))
    for key in ("state_dict", "optimizer", "arch_optimizer"):
        assert resumed[key].keys() == full[key].keys()
        for name, value in full[key].items():
            if isinstance(value, paddle.Tensor):
                np.testing.assert_array_equal(resumed[key][name].numpy(), value.numpy(), err_msg=f"{key} {name}")
    assert resumed["scheduler"] == full["scheduler"]


@pytest.fixture(scope="module")
def colour_cifar_dir(tmp_path_factory):
    """CIFAR-10 batches a tiny DARTS network learns in a few steps even through the CIFAR
    augmentation: 4 classes of noisy flat colours (labels 0..3 of CIFAR's 10), 10 training images
    each dealt into data_batch_1..5, 4 test images each."""
    root = str(tmp_path_factory.mktemp("colour_cifar"))
    rng = np.random.default_rng(0)
    colours = [(200, 40, 40), (40, 180, 60), (40, 60, 200), (220, 210, 40)]

    def draw(per_class):
        images = [np.clip(np.asarray(rgb) * rng.uniform(0.6, 1.2) + rng.normal(0, 25, (32, 32, 3)), 0, 255)
                  for rgb in colours for _ in range(per_class)]
        return np.stack(images).astype(np.uint8), np.repeat(np.arange(len(colours)), per_class)

    images, labels = draw(10)
    for i, part in enumerate(np.array_split(rng.permutation(len(labels)), 5)):
        write_cifar_batch(os.path.join(root, f"data_batch_{i + 1}"), images[part], labels[part].tolist())
    images, labels = draw(4)
    write_cifar_batch(os.path.join(root, "test_batch"), images, labels.tolist())
    return root


RETRAIN_TINY = ["DARTS.INIT_CHANNELS", 4, "DARTS.LAYERS", 3, "DATASET.BATCH_SIZE", 10, "LOG_INTERVAL", 1]


@pytest.fixture(scope="module")
def retrain_dir(main, search_dir, colour_cifar_dir, tmp_path_factory):
    """The search's recommended genotype retrained for 4 epochs (C 4, 3 cells, the auxiliary head
    weighted 0.4, drop path raised to 0.4, Cutout 8, gradient clipping); returns the run folder."""
    root = tmp_path_factory.mktemp("pdarts_retrain")
    args = ["retrain", RETRAIN, *RETRAIN_TINY, "DATA_DIR", colour_cifar_dir, "SAVE_PATH", root, "MODEL", "retrain",
            "DARTS.GENOTYPE", os.path.join(search_dir, "genotypes.json"), "DARTS.DROP_PATH_PROB", 0.4, "EPOCHS", 4]
    assert main([str(a) for a in args]) == 0
    return str(root / "retrain")


def test_retrain_of_the_searched_genotype_learns_with_auxiliary_head_and_drop_path(retrain_dir):
    rows = _rows(os.path.join(retrain_dir, "summary.csv"))
    assert [float(r["train_drop_path_prob"]) for r in rows] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < 0.3 * losses[0]
    # 16 test images, 4 classes: at least 10 right (chance is 4); float32 rounding of other kernels
    # (MKL's AVX2 GEMMs) moves the last epoch by an image or two
    assert float(rows[0]["eval_prec1"]) < 62.5 <= float(rows[-1]["eval_prec1"])
    log = _read(os.path.join(retrain_dir, "retrain.log"))
    assert "[Model-pdarts] genotype " in log and "without the auxiliary head)" in log


def test_test_mode_evaluates_the_retrained_genotype(main, retrain_dir, search_dir, colour_cifar_dir, tmp_path):
    best = os.path.join(retrain_dir, "model_best.pdparams")
    args = ["test", RETRAIN, *RETRAIN_TINY, "DATA_DIR", colour_cifar_dir, "SAVE_PATH", tmp_path, "MODEL", "t",
            "RESUME_PATH", best, "DARTS.GENOTYPE", os.path.join(search_dir, "genotypes.json"),
            "TEST.INFERENCE", "dygraph"]
    assert main([str(a) for a in args]) == 0
    with open(tmp_path / "t" / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["images"] == 16 and metrics["weights"] == "state_dict"
    assert metrics["top1"] == pytest.approx(read_checkpoint_file(best)["metric"])
    recommended = load_genotypes(os.path.join(search_dir, "genotypes.json"))["recommended"]
    assert metrics["arch"]["normal"] == [list(edge) for edge in recommended.normal]


@pytest.mark.parametrize("mode, overrides, message", [
    ("retrain", ["DARTS.GENOTYPE", "PDARTS_V2"], "DARTS.GENOTYPE: genotype file PDARTS_V2 not found"),
    ("test", ["DARTS.GENOTYPE", "nowhere/genotypes.json:recommended"], "genotype file nowhere/genotypes.json not"),
    ("train", ["DARTS.SEARCH.NUM_OPS", "[8, 5, 6]"], "NUM_OPS.*decrease strictly"),
    ("train", ["DARTS.SEARCH.WEIGHTS_ONLY_EPOCHS", 3, "DARTS.SEARCH.EPOCHS", 3], "so that the architecture trains"),
])
def test_user_errors_are_one_line(main, capsys, demo_cifar_dir, tmp_path, mode, overrides, message):
    config = SEARCH if mode == "train" else RETRAIN
    argv = [mode, config, "DATA_DIR", demo_cifar_dir, "SAVE_PATH", tmp_path, "RESUME_PATH", tmp_path / "x",
            *overrides]
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert __import__("re").search(message, err), err


def test_a_genotype_file_that_is_not_one_is_refused(main, capsys, demo_cifar_dir, tmp_path):
    bad = tmp_path / "genotypes.json"
    bad.write_text(json.dumps({"recommended": {"normal": [["sep_conv_3x3", 0]], "normal_concat": [2],
                                               "reduce": [["sep_conv_3x3", 0]] * 2, "reduce_concat": [2]}}))
    argv = ["retrain", RETRAIN, "DATA_DIR", demo_cifar_dir, "SAVE_PATH", tmp_path, "DARTS.GENOTYPE", bad]
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: DARTS.GENOTYPE: ") and "recommended.normal must be" in err and "two per node" in err
