"""tools/lite_chain.py: train -> evaluate -> export -> infer -> compare on demo data, for PeleeNet
and a Cream net (subprocesses, as users run it); which recipe a model gets; a failing stage."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lib.config import ConfigError
from lib.engine.lite_chain import STAGES

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHAIN = os.path.join(REPO, "tools", "lite_chain.py")
RETRAIN = os.path.join(REPO, "experiments", "configs", "retrain")


@pytest.mark.e2e
@pytest.mark.parametrize("model, recipe", [("peleenet", "peleenet.yaml"), ("cream_14", "14.yaml")])
def test_the_chain_runs_every_stage_for_any_model(model, recipe, tmp_path):
    env = dict(os.environ, GLOG_minloglevel="2")
    proc = subprocess.run([sys.executable, CHAIN, "--model", model, "--work", "work"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert [line.split("]")[0][1:] for line in lines] == list(STAGES)
    assert proc.stdout.rstrip().endswith("lite chain: all stages passed")
    assert f"lite chain: {model} ({os.path.join(RETRAIN, recipe)})" in proc.stdout
    report = dict(line[1:].split("] ", 1) for line in lines)
    assert report["data"].startswith("4 classes, 32 train / 16 val images")
    assert "2 epochs" in report["train"] and "on 16 images (dygraph" in report["evaluate"]
    assert "top-1 agreement" in report["compare"]

    run_dir = tmp_path / "work" / "runs" / f"lite_{model}"
    with open(run_dir / "summary.csv", newline="") as f:
        losses = [float(row["train_loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 2 and all(np.isfinite(losses))
    with open(run_dir / "inference" / "model.info.json") as f:
        info = json.load(f)
    assert info["input_shape"] == [3, 32, 32] and len(info["class_names"]) == 4
    assert info["model"] == (model if model == "peleenet" else None)
    assert info["preprocess"]["interpolation"] == ("bilinear" if model == "peleenet" else "bicubic")
    with open(tmp_path / "work" / "runs" / f"lite_{model}_test" / "metrics.json") as f:
        metrics = json.load(f)
    # the exported model's top-1 on the validation images is the evaluation's
    assert f"exported vs {metrics['top1']:.2f} % evaluated" in report["compare"]
    assert report["infer"].startswith(f"top-1 {metrics['top1']:.2f} % on 16 images")


def test_each_model_trains_with_its_own_recipe(load_tool):
    tool = load_tool("lite_chain")

    def resolved(*argv):
        return tool.config_and_overrides(tool.parse_args(list(argv)))

    assert resolved("--model", "peleenet") == (os.path.join(RETRAIN, "peleenet.yaml"),
                                               ["NET.MODEL", "peleenet"], "peleenet")
    assert resolved("--model", "cream_43", "LR", "0.1") == (os.path.join(RETRAIN, "43.yaml"),
                                                            ["LR", "0.1"], "cream_43")
    # a registered model without a recipe of its own: PeleeNet's plain SGD recipe
    assert resolved("--model", "mobilenetv3_small_100")[:2] == (
        os.path.join(RETRAIN, "peleenet.yaml"), ["NET.MODEL", "mobilenetv3_small_100"])
    searched = os.path.join(RETRAIN, "searched.yaml")
    assert resolved("--config", searched, "NET.BOARD_JSON", "")[1:] == (["NET.BOARD_JSON", ""],
                                                                        "searched")
    with pytest.raises(ConfigError, match="--model 'pelenet' is not registered; choose one of"):
        resolved("--model", "pelenet")


def test_a_failing_stage_is_named_and_exits_non_zero(load_tool, capsys, tmp_path):
    code = load_tool("lite_chain").main(["--model", "peleenet", "--data", str(tmp_path / "none"),
                                         "--work", str(tmp_path / "work")])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: lite chain failed at stage 'data': no train/ folder in" in err
