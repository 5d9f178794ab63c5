""".pdparams files that carry code, handed to every tool or planted in a run folder: each tool
stops with one ``error:`` line and exit status 2 (a fresh run ignores a planted checkpoint with a
warning), and the code never runs: the marker file its payload would create stays absent."""
import os

import paddle
import pytest

from lib.models import build_childnet
from tests.pimm.models.paddle_files import payloads

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RETRAIN_14 = os.path.join(REPO, "experiments", "configs", "retrain", "14.yaml")
TEST_CFG = os.path.join(REPO, "experiments", "configs", "test", "test.yaml")
DEMO = os.path.join(REPO, "experiments", "configs", "train", "demo.yaml")
TINY = ["DATASET.NUM_CLASSES", "4", "DATASET.IMAGE_SIZE", "32", "WORKERS", "0", "NUM_GPU", "1",
        "DATASET.BATCH_SIZE", "16", "LOG_INTERVAL", "1", "EPOCHS", "1"]
REFUSAL = ("its pickle references the Python global 'posix.system', which a checkpoint never "
           "needs; only load checkpoints you trust")


def _stealthy_checkpoint(path, marker):
    """Genuine net-14 weights (4 classes) with one extra entry whose pickle runs a command."""
    path, weights = str(path), build_childnet(14, num_classes=4).state_dict()
    paddle.save({"state_dict": weights, "state_dict_ema": weights, "epoch": 3, "version": 2,
                 "arch": "cream_14", "notes": payloads(marker)["posix.system"]}, path)
    return path


def _single_error(stderr, *fragments):
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.mark.e2e
def test_test_mode_refuses_a_stealthy_checkpoint(tmp_path, demo_data_dir, run_main):
    marker = tmp_path / "pwned"
    checkpoint = _stealthy_checkpoint(tmp_path / "14.pdparams", marker)
    proc = run_main("test", TEST_CFG, *TINY, "DATA_DIR", demo_data_dir, "SAVE_PATH",
                    tmp_path / "runs", "RESUME_PATH", checkpoint, "NET.SELECTION", 14,
                    cwd=tmp_path, ok=False)
    assert proc.returncode == 2
    _single_error(proc.stderr, f"refused to load {checkpoint}: {REFUSAL}")
    assert not marker.exists()


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["retrain", "train"])
def test_auto_resume_refuses_planted_files(tmp_path, demo_data_dir, run_main, mode):
    """retrain: a planted last.pdparams; search: a planted last.pdparams next to a recovery file
    of a later epoch (AUTO_RESUME reads last's epoch to choose between them)."""
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "runs" / "planted"
    run_dir.mkdir(parents=True)
    last = _stealthy_checkpoint(run_dir / "last.pdparams", marker)
    if mode == "train":
        _stealthy_checkpoint(run_dir / "recovery-5-2.pdparams", marker)
    config, extra = (RETRAIN_14, ["DATASET.SELECTION_IMAGE_SIZE", "False"]) if mode == "retrain" \
        else (DEMO, ["SUPERNET.FLOPS_MAXIMUM", "115"])
    proc = run_main(mode, config, *TINY, *extra, "DATA_DIR", demo_data_dir, "SAVE_PATH",
                    tmp_path / "runs", "MODEL", "planted", "AUTO_RESUME", "True",
                    cwd=tmp_path, ok=False)
    assert proc.returncode == 2
    _single_error(proc.stderr, f"cannot resume from {last}: refused to load {last}: {REFUSAL}")
    assert not marker.exists()


@pytest.mark.e2e
def test_a_fresh_run_skips_a_planted_checkpoint(tmp_path, demo_data_dir, run_main):
    """With nothing to resume, the checkpoint saver ranks the files already in the run folder:
    the planted one is skipped with a warning and the run trains to the end."""
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "runs" / "fresh"
    run_dir.mkdir(parents=True)
    planted = _stealthy_checkpoint(run_dir / "checkpoint-3.pdparams", marker)
    run_main("retrain", RETRAIN_14, *TINY, "DATASET.SELECTION_IMAGE_SIZE", "False", "DATA_DIR",
             demo_data_dir, "SAVE_PATH", tmp_path / "runs", "MODEL", "fresh", "AUTO_RESUME",
             "True", "RESUME_PATH", "", cwd=tmp_path)
    with open(run_dir / "retrain.log") as f:
        log = f.read()
    assert f"skipping {planted} while rebuilding the checkpoint ranking: refused to load" in log
    assert (run_dir / "last.pdparams").exists() and not marker.exists()


@pytest.mark.parametrize("tool, argv", [
    ("convert_checkpoint", ["{evil}", "{out}.pdparams", "--selection", "14"]),
    ("export_model", ["--selection", "14", "--num-classes", "4", "--checkpoint", "{evil}",
                      "--output", "{out}"]),
    ("infer", ["{evil}", "{image}"]),
])
def test_tools_refuse_with_one_error_line(tmp_path, load_tool, capsys, demo_data_dir, tool, argv):
    marker = tmp_path / "pwned"
    evil = _stealthy_checkpoint(tmp_path / "14.pdparams", marker)
    image = os.path.join(demo_data_dir, "val", "00_circle", sorted(
        os.listdir(os.path.join(demo_data_dir, "val", "00_circle")))[0])
    values = {"evil": evil, "out": str(tmp_path / "out"), "image": image}
    code = load_tool(tool).main([arg.format(**values) for arg in argv])
    err = capsys.readouterr().err
    assert code == 2
    # infer takes exported models only (no pickle): it fails on the missing program instead
    _single_error(err, *([] if tool == "infer" else [f"refused to load {evil}: {REFUSAL}"]))
    assert not marker.exists() and not os.path.exists(values["out"] + ".pdparams")
