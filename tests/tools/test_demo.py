"""README's demo, shortened (fewer images and epochs, the same configs): the search learns, and its
best path is retrained and tested by the documented commands, with their default paths."""
import csv
import json
import math
import os

import pytest

pytestmark = pytest.mark.e2e  # runs tools/main.py in subprocesses

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(REPO, "experiments", "configs")
SEARCH_DIR = os.path.join("experiments", "workspace", "train", "demo_search")


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_data_factory, run_main):
    """The demo search from a scratch folder, as README runs it (``./data/demo``) but on 2,000
    training images for 2 epochs."""
    data = demo_data_factory(num_classes=10, train_per_class=200, val_per_class=30, image_size=32)
    cwd = tmp_path_factory.mktemp("demo")
    os.makedirs(cwd / "data")
    os.symlink(data, cwd / "data" / "demo")
    run_main("train", os.path.join(CONFIGS, "train", "demo.yaml"), "EPOCHS", 2, cwd=cwd, timeout=900)
    return cwd


def _summary(run_dir):
    with open(run_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_the_demo_search_learns(demo):
    rows = _summary(demo / SEARCH_DIR)
    assert [row["epoch"] for row in rows] == ["0", "1"]
    last = rows[-1]
    # chance is 10 % and a uniform guess has loss ln(10) = 2.30
    assert float(last["train_loss"]) < math.log(10) - 0.15
    assert float(last["eval_prec1"]) > 22.0  # the mean over the validated random paths
    assert float(last["eval_loss"]) < float(rows[0]["eval_loss"])
    with open(demo / SEARCH_DIR / "board.json") as f:
        board = json.load(f)
    assert board["paths"] and board["best_in_range"]["flops"] <= 100
    # the demo keeps the last and the best checkpoint only
    kept = sorted(name for name in os.listdir(demo / SEARCH_DIR) if name.endswith(".pdparams"))
    assert kept in (["last.pdparams", "model_best.pdparams"],
                    ["checkpoint-0.pdparams", "last.pdparams", "model_best.pdparams"],
                    ["checkpoint-1.pdparams", "last.pdparams", "model_best.pdparams"])


def test_the_best_path_is_retrained_and_tested(demo, run_main):
    retrain = run_main("retrain", os.path.join(CONFIGS, "retrain", "demo.yaml"), "EPOCHS", 1, cwd=demo)
    with open(demo / SEARCH_DIR / "board.json") as f:
        entry = json.load(f)["best_in_range"]
    best = entry["arch"]
    assert f"summary: {best} (best path of ./{SEARCH_DIR}/board.json)" in retrain.stdout
    test = run_main("test", os.path.join(CONFIGS, "test", "demo.yaml"), cwd=demo)
    assert f"summary: {best} (best path of ./{SEARCH_DIR}/board.json), " in test.stdout
    with open(demo / "experiments" / "workspace" / "test" / "demo_test" / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["arch"] == best and metrics["images"] == 300
    assert 0.5 < metrics["params_m"] < 2 and metrics["mflops"] < metrics["mflops_224"]
    assert (metrics["search_mflops"], metrics["search_params_m"]) == (entry["flops"], entry["params"])
    assert metrics["search_mflops"] <= 100
    assert metrics["top1"] > 15.0  # one epoch from scratch
