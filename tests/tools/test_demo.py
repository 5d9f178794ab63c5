"""README's demo pipeline, run as README writes it: its first commands (data, search, retrain,
test) and its plot command, each verbatim in a scratch folder laid out like a clone; the search
and the retrain shortened by arguments appended to their commands (2 search epochs, 1 retrain
epoch, the same configs and data). The search must learn, and the retrain and test must take its best path."""
import csv
import json
import math
import os
import subprocess
import sys

import pytest

from tests.readme_commands import first_commands, tool_steps

pytestmark = pytest.mark.e2e  # runs the tools in subprocesses

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEARCH_DIR = os.path.join("experiments", "workspace", "train", "demo_search")
RETRAIN_DIR = os.path.join("experiments", "workspace", "retrain", "demo_retrain")
# appended to README's commands
SHORTER = {"tools/make_demo_data.py": [], "train": ["EPOCHS", "2"], "retrain": ["EPOCHS", "1"], "test": []}


def _run(step, cwd, *extra):
    """README's ``python tools/...`` command with ``extra`` appended, in ``cwd``; must exit 0."""
    assert step[0] == "python"
    env = dict(os.environ, GLOG_minloglevel="2")
    proc = subprocess.run([sys.executable, *step[1:], *extra], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(step)}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A folder with the checkout's code and configs (links) and nothing else, in which README's
    first commands ran; returns (folder, {command name: CompletedProcess})."""
    cwd = tmp_path_factory.mktemp("clone")
    for name in ("tools", "lib", "pimm"):
        os.symlink(os.path.join(REPO, name), cwd / name)
    os.makedirs(cwd / "experiments")
    os.symlink(os.path.join(REPO, "experiments", "configs"), cwd / "experiments" / "configs")
    done = {}
    for step in first_commands()[1:]:  # after the install
        name = step[1] if step[1] != "tools/main.py" else step[2]
        done[name] = _run(step, cwd, *SHORTER[name])
    assert set(done) == set(SHORTER)
    return cwd, done


def _summary(run_dir):
    with open(run_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_the_demo_search_learns(demo):
    cwd, _ = demo
    rows = _summary(cwd / SEARCH_DIR)
    assert [row["epoch"] for row in rows] == ["0", "1"]
    last = rows[-1]
    # chance is 10 % and a uniform guess has loss ln(10) = 2.30
    assert float(last["train_loss"]) < math.log(10) - 0.15
    assert float(last["eval_prec1"]) > 22.0  # the mean over the validated random paths
    assert float(last["eval_loss"]) < float(rows[0]["eval_loss"])
    with open(cwd / SEARCH_DIR / "board.json") as f:
        board = json.load(f)
    assert board["paths"] and board["best_in_range"]["flops"] <= 100
    # the demo keeps the last and the best checkpoint only
    kept = sorted(name for name in os.listdir(cwd / SEARCH_DIR) if name.endswith(".pdparams"))
    assert kept in (["last.pdparams", "model_best.pdparams"],
                    ["checkpoint-0.pdparams", "last.pdparams", "model_best.pdparams"],
                    ["checkpoint-1.pdparams", "last.pdparams", "model_best.pdparams"])


def test_the_best_path_is_retrained_and_tested(demo):
    cwd, done = demo
    with open(cwd / SEARCH_DIR / "board.json") as f:
        entry = json.load(f)["best_in_range"]
    best = entry["arch"]
    assert f"summary: {best} (best path of ./{SEARCH_DIR}/board.json)" in done["retrain"].stdout
    assert f"summary: {best} (best path of ./{SEARCH_DIR}/board.json), " in done["test"].stdout
    with open(cwd / "experiments" / "workspace" / "test" / "demo_test" / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["arch"] == best and metrics["images"] == 500
    assert 0.5 < metrics["params_m"] < 2 and metrics["mflops"] < metrics["mflops_224"]
    assert (metrics["search_mflops"], metrics["search_params_m"]) == (entry["flops"], entry["params"])
    # the retrained network is the board's path itself: thop's count agrees with the search's table
    assert abs(metrics["mflops_224"] - entry["flops"]) < 0.03 * entry["flops"]
    assert metrics["search_mflops"] <= 100
    assert metrics["top1"] > 15.0  # one epoch from scratch


def test_the_plot_command_draws_the_demo_runs(demo):
    pytest.importorskip("matplotlib")
    cwd, _ = demo
    for step in (step for step in tool_steps() if step[1] == "tools/plot.py"):
        folder = cwd / step[2]
        for name in os.listdir(folder):
            if name.endswith(".png"):
                os.remove(folder / name)  # drawn by the run itself: plot.py must draw them again
        printed = _run(step, cwd).stdout.split()
        searched = os.path.normpath(step[2]) == SEARCH_DIR
        assert printed == [os.path.join(step[2], name) for name in
                           (("training_curves.png", "board.png") if searched else ("training_curves.png",))]
        assert all(os.path.getsize(cwd / path) > 10_000 for path in printed)
    assert (cwd / RETRAIN_DIR / "training_curves.png").is_file()  # retrain draws its curves too
