"""tools/main.py turns the mistakes users make into one line on stderr and a non-zero exit code."""
import json
import os
import shutil

import pytest

from lib.config import ConfigError, load_config
from lib.models import build_childnet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RETRAIN_14 = os.path.join(REPO, "experiments", "configs", "retrain", "14.yaml")
TEST_CFG = os.path.join(REPO, "experiments", "configs", "test", "test.yaml")


@pytest.fixture
def main(load_tool, capsys, tmp_path):
    """Run tools/main.py's main(argv) in-process; returns (exit code, stderr)."""
    tool = load_tool("main")

    def run(*argv):
        code = tool.main([*map(str, argv), "SAVE_PATH", str(tmp_path / "runs")])
        return code, capsys.readouterr().err

    run.tool = tool
    return run


def _one_line(err):
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.e2e  # runs tools/main.py in a subprocess
def test_unknown_config_key_in_a_subprocess(run_main, tmp_path):
    proc = run_main("retrain", RETRAIN_14, "NET.SELECTON", 43, cwd=tmp_path, ok=False)
    assert proc.returncode == 2
    assert "NET.SELECTON" in _one_line(proc.stderr) and "lib/config.py" in proc.stderr


def test_missing_data_folders(main, tmp_path):
    code, err = main("retrain", RETRAIN_14, "DATA_DIR", tmp_path / "nowhere", "WORKERS", 0)
    assert code == 2 and "DATA_DIR/train not found" in _one_line(err) and "data/README.md" in err
    code, err = main("test", TEST_CFG, "DATA_DIR", tmp_path / "nowhere")
    assert code == 2 and "DATA_DIR/val not found" in _one_line(err)


def test_empty_class_folder(main, tmp_path, demo_data_dir):
    shutil.copytree(demo_data_dir, tmp_path / "data")
    os.makedirs(tmp_path / "data" / "train" / "04_empty")
    code, err = main("retrain", RETRAIN_14, "DATA_DIR", tmp_path / "data", "DATASET.NUM_CLASSES", 5,
                     "WORKERS", 0)
    assert code == 2 and "04_empty holds no images" in _one_line(err)


@pytest.mark.parametrize("overrides, message", [
    (["NET.SELECTION", 470], "NET.SELECTION 470 is not a released Cream net"),
    (["NET.SELECTION", -1], "NET.SELECTION -1 needs NET.INPUT_ARCH"),
    (["NET.SELECTION", -1, "NET.INPUT_ARCH", "[[0],[9],[3],[3],[3],[3],[0]]"], "outside 0..5"),
    (["NET.SELECTION", 14, "NET.INPUT_ARCH", "[[0],[3],[3],[3],[3],[3],[0]]"],
     "set NET.SELECTION -1"),
    (["EVAL_METRICS", "top1"], "EVAL_METRICS 'top1' is not measured"),
    (["NUM_GPU", 1, "--nproc", 0], "--nproc must be >= 1"),
    (["AMP", "O1"], "AMP O1 needs a GPU"),
    (["AMP", "True"], "AMP O1 needs a GPU"),  # the reference's boolean reads as O1
    (["AMP", "O5"], "AMP must be one of ('O0', 'O1', 'O2')"),
    (["BATCHNORM.SYNC_BN", "True"], "BATCHNORM.SYNC_BN needs GPUs"),
    (["DATASET.IMAGE_SIZE", 0], "DATASET.IMAGE_SIZE must be >= 1, got 0"),
    (["WORKERS", -1], "WORKERS must be >= 0, got -1"),
    (["CHECKPOINT_HIST", 0], "CHECKPOINT_HIST must be >= 1, got 0"),
    (["AMP_DTYPE", "int8"], "AMP_DTYPE must be one of ('float16', 'bfloat16')"),
    (["NET.MODEL", "peleenet", "NET.ZERO_INIT_CLASSIFIER", "True"],
     "NET.ZERO_INIT_CLASSIFIER applies to Cream's networks only"),
    (["OPT", "adamx"], "unknown optimizer OPT='adamx'; choose one of"),
    (["SCHED", "cosin"], "unknown scheduler SCHED='cosin'; choose one of"),
])
def test_unsupported_settings(main, demo_data_dir, overrides, message):
    code, err = main("retrain", RETRAIN_14, "DATA_DIR", demo_data_dir, "DATASET.NUM_CLASSES", 4,
                     "WORKERS", 0, *overrides)
    assert code == 2 and message in _one_line(err)


def test_checkpoint_that_does_not_fit_the_selection(main, tmp_path, demo_data_dir):
    import paddle

    path = tmp_path / "43.pdparams"
    paddle.save({"state_dict": build_childnet(43, num_classes=4).state_dict(),
                 "args": {"NET": {"SELECTION": 43}}}, str(path))
    code, err = main("test", TEST_CFG, "DATA_DIR", demo_data_dir, "DATASET.NUM_CLASSES", 4,
                     "WORKERS", 0, "RESUME_PATH", path)
    assert code == 2
    assert "does not fit selection 14 (it was trained with NET.SELECTION 43)" in _one_line(err)
    code, err = main("test", TEST_CFG, "DATA_DIR", demo_data_dir,
                     "RESUME_PATH", tmp_path / "none.pth.tar")
    assert code == 2 and "RESUME_PATH: no checkpoint" in _one_line(err)


def test_a_mode_whose_engine_is_missing(main, demo_data_dir, monkeypatch):
    import lib.engine

    monkeypatch.setitem(lib.engine.ENGINES, ("train", "cream"), "lib.engine.not_written")
    code, err = main("train", RETRAIN_14, "DATA_DIR", demo_data_dir)
    assert code == 2 and "mode 'train' is not available" in _one_line(err)


def test_a_method_without_the_mode(main, demo_data_dir):
    code, err = main("retrain", RETRAIN_14, "DATA_DIR", demo_data_dir, "METHOD", "darts")
    assert code == 2 and "METHOD 'darts' has no 'retrain' mode; set METHOD to one of " in _one_line(err)
    assert "cream" in err and "pdarts" in err


def test_num_gpu_is_ignored_without_gpus_and_checked_with_them(main, monkeypatch):
    tool = main.tool
    args = tool.parse_args(["retrain", RETRAIN_14, "NET.SELECTION", "-1"])
    assert args.overrides == ["NET.SELECTION", "-1"] and args.nproc is None
    cfg = load_config(RETRAIN_14)  # NUM_GPU 8
    monkeypatch.setattr(tool, "_visible_gpus", lambda: 0)
    assert tool.processes_per_node(args, cfg) == 1
    monkeypatch.setattr(tool, "_visible_gpus", lambda: 8)
    assert tool.processes_per_node(args, cfg) == 8
    monkeypatch.setattr(tool, "_visible_gpus", lambda: 2)
    with pytest.raises(ConfigError, match="NUM_GPU is 8 but 2 GPU"):
        tool.processes_per_node(args, cfg)
    args = tool.parse_args(["retrain", RETRAIN_14, "--nproc", "3", "--nnodes", "2", "--master",
                            "10.0.0.1:8090", "--rank", "1"])
    command = tool.launch_command(args, cfg, tool.processes_per_node(args, cfg))
    assert command[1:3] == ["-m", "paddle.distributed.launch"]
    flags = command[3:command.index(os.path.abspath(tool.__file__))]
    assert ["--nproc_per_node", "3"] == flags[flags.index("--nproc_per_node"):][:2]
    assert {"--nnodes": "2", "--master": "10.0.0.1:8090", "--rank": "1"}.items() <= dict(
        zip(flags[::2], flags[1::2])).items()
    assert command[-2:] == ["retrain", RETRAIN_14]


@pytest.mark.parametrize("text, message", [
    ("MODEL: [unclosed\n", "is not valid YAML at line 2, column 1: expected ',' or ']'"),
    ("- EPOCHS\n- 10\n", "holds a YAML list, not a mapping of config keys"),
])
def test_config_files_that_are_not_configs(main, tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code, err = main("retrain", path)
    assert code == 2 and f"error: {path} {message}" in _one_line(err)


@pytest.mark.parametrize("entry, message", [
    ({"arch": [[0], [9], [3, 3], [3, 3], [3], [3], [0]], "flops": 10.0},
     "stage 1 has choice indices [9] outside 0..5"),
    ({"arch": [[0], [3], [3, 3], [3, 3], [3], [3], [0]], "flops": "ten"},
     "paths[0].flops is 'ten', not a number (MFLOPs)"),
])
def test_board_json_that_names_no_usable_path(main, tmp_path, demo_data_dir, entry, message):
    board = tmp_path / "board.json"
    board.write_text(json.dumps({"paths": [entry], "flops_minimum": 0, "flops_maximum": 100}))
    code, err = main("retrain", RETRAIN_14, "DATA_DIR", demo_data_dir, "DATASET.NUM_CLASSES", 4,
                     "NET.SELECTION", -1, "NET.BOARD_JSON", board)
    assert code == 2 and "NET.BOARD_JSON" in _one_line(err) and message in err
def test_correlation_without_its_checkpoint(main, tmp_path, demo_data_dir):
    config = os.path.join(REPO, "experiments", "configs", "correlation", "demo.yaml")
    code, err = main("correlation", config, "DATA_DIR", demo_data_dir, "WORKERS", 0,
                     "CORRELATION.CHECKPOINT", tmp_path / "none.pdparams")
    assert code == 2 and "CORRELATION.CHECKPOINT: no file at" in _one_line(err)
