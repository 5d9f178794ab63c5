"""tools/convert_checkpoint.py: PyTorch Cream checkpoints -> .pdparams that load_checkpoint reads."""
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from lib.models import build_childnet
from pimm.models import load_checkpoint, read_checkpoint_file
from tests.pimm.models.paddle_to_torch import torch_state_dict
from tests.pimm.models.torchfile_writer import CfgNode, save_legacy, save_zip

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARCH = [[0], [2, 1], [3], [4, 0], [5, 1], [0, 3], [0]]


@pytest.fixture
def tool(load_tool):
    return load_tool("convert_checkpoint")


def _logits(model, x):
    model.eval()
    return model(paddle.to_tensor(x)).numpy()


def _relative_error(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.mark.e2e  # runs the tool in a subprocess
def test_released_checkpoint_from_the_command_line(cream14_dir, tmp_path):
    destination = str(tmp_path / "14.pdparams")
    result = subprocess.run([sys.executable, "tools/convert_checkpoint.py",
                             os.path.join(cream14_dir, "14.pth.tar"), destination],
                            cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cream_14 [[0], [3], [3, 3], [3, 3], [3], [3], [0]] (2.673M parameters)" in result.stdout
    assert "weights: state_dict (161 tensors), state_dict_ema (161 tensors)" in result.stdout
    assert "epoch:   591" in result.stdout and "not converted: optimizer" in result.stdout

    checkpoint = read_checkpoint_file(destination)
    assert checkpoint["epoch"] == 591 and checkpoint["version"] == 2 and checkpoint["arch"] == "cream_14"
    assert checkpoint["args"]["NET"]["SELECTION"] == 14 and "optimizer" not in checkpoint
    x = np.load(os.path.join(cream14_dir, "input.npy"))
    for use_ema, reference in ((False, "logits.npy"), (True, "logits_ema.npy")):
        model = build_childnet(14)
        assert load_checkpoint(model, destination, use_ema=use_ema) == ([], [])
        assert _relative_error(_logits(model, x), np.load(os.path.join(cream14_dir, reference))) <= 1e-5


def test_ema_option_stores_the_ema_weights(cream14_dir, tmp_path, tool, capsys):
    destination = str(tmp_path / "14_ema.pdparams")
    assert tool.main([os.path.join(cream14_dir, "14.pth.tar"), destination, "--ema", "--selection", "14"]) == 0
    assert "[the EMA weights, stored as state_dict]" in capsys.readouterr().out
    assert "state_dict_ema" not in read_checkpoint_file(destination)
    model = build_childnet(14)
    load_checkpoint(model, destination)
    x = np.load(os.path.join(cream14_dir, "input.npy"))
    assert _relative_error(_logits(model, x), np.load(os.path.join(cream14_dir, "logits_ema.npy"))) <= 1e-5


def test_searched_arch_and_class_count_come_from_the_saved_config(tmp_path, tool, capsys):
    paddle.seed(0)
    source_model = build_childnet(ARCH, num_classes=10)
    source = str(tmp_path / "searched.pth.tar")
    args = CfgNode({"NET": {"SELECTION": -1, "INPUT_ARCH": ARCH}, "DATASET": {"NUM_CLASSES": 10}})
    save_zip({"state_dict": torch_state_dict(source_model, "module."), "epoch": 0, "args": args}, source)
    destination = str(tmp_path / "searched.pdparams")
    assert tool.main([source, destination]) == 0
    out = capsys.readouterr().out
    assert f"model:   cream {ARCH}" in out and "epoch:   0" in out and "state_dict_ema" not in out

    model = build_childnet(ARCH, num_classes=10)
    load_checkpoint(model, destination)
    x = np.random.RandomState(0).randn(1, 3, 32, 32).astype("float32")
    np.testing.assert_allclose(_logits(model, x), _logits(source_model, x), rtol=1e-6, atol=1e-6)
    assert read_checkpoint_file(destination)["cream_arch"] == ARCH


def test_errors_name_the_fix(tmp_path, tool, capsys):
    source = str(tmp_path / "bare.pth")
    save_legacy(torch_state_dict(build_childnet(ARCH, num_classes=4)), source)
    assert tool.main([source, str(tmp_path / "out.pdparams")]) == 2
    assert "pass --selection (14, 43, 114, 287, 481, 604) or --arch" in capsys.readouterr().err
    assert tool.main([source, str(tmp_path / "out.pdparams"), "--ema", "--selection", "14"]) == 2
    assert "has no EMA weights" in capsys.readouterr().err
    assert tool.main([source, str(tmp_path / "out.pdparams"), "--selection", "14", "--num-classes", "4"]) == 2
    assert "does not fit MobileNetV3" in capsys.readouterr().err  # the weights are another arch's
    assert tool.main([source, str(tmp_path / "out.pth"), "--arch", str(ARCH)]) == 2
    assert "must end in .pdparams" in capsys.readouterr().err
    assert tool.main([source, str(tmp_path / "out.pdparams"), "--arch", str(ARCH), "--num-classes", "4"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["bare.pth", "out.pdparams"]  # no temporary file left
    with pytest.raises(SystemExit):
        tool.parse_args([source, "x.pdparams", "--arch", "[[0], [3"])
