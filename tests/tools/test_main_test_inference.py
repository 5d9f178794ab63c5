"""tools/main.py test through Paddle Inference (TEST.INFERENCE): the same metrics as dygraph."""
import json
import os

import paddle
import pytest

from lib.models import build_childnet

pytestmark = pytest.mark.e2e  # runs tools/main.py in subprocesses

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_CFG = os.path.join(REPO, "experiments", "configs", "test", "test.yaml")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    paddle.seed(5)
    model = build_childnet(14, num_classes=4)
    with paddle.no_grad():  # decisive logits: top-1 is not decided by float rounding
        model.classifier.weight.set_value(model.classifier.weight * 400.0)
    path = str(tmp_path_factory.mktemp("ckpt") / "14_demo.pdparams")
    paddle.save({"state_dict": model.state_dict(), "epoch": 0}, path)
    return path


def _test(run_main, data, checkpoint, folder, backend, ok=True):
    folder.mkdir(parents=True)
    return run_main("test", TEST_CFG, "WORKERS", "0", "DATASET.BATCH_SIZE", "4", "DATA_DIR", data,
                    "SAVE_PATH", folder, "RESUME_PATH", checkpoint, "NET.SELECTION", 14,
                    "DATASET.NUM_CLASSES", 4, "NET.EMA.USE", "False", "TEST.INFERENCE", backend,
                    cwd=folder, ok=ok)


def test_paddle_inference_gives_the_dygraph_metrics(run_main, demo_data_dir, checkpoint, tmp_path):
    metrics = {}
    for backend in ("dygraph", "paddle_inference"):
        _test(run_main, demo_data_dir, checkpoint, tmp_path / backend, backend)
        with open(tmp_path / backend / "Childnet_Testing" / "metrics.json") as f:
            metrics[backend] = json.load(f)
    dygraph, fast = metrics["dygraph"], metrics["paddle_inference"]
    assert (dygraph["backend"], fast["backend"]) == ("dygraph", "paddle_inference")
    assert fast["images"] == dygraph["images"] == 16
    assert 0 < dygraph["top1"] < 100
    assert (fast["top1"], fast["top5"]) == (dygraph["top1"], dygraph["top5"])
    assert fast["loss"] == pytest.approx(dygraph["loss"], rel=1e-4)
    with open(tmp_path / "paddle_inference" / "Childnet_Testing" / "test.log") as f:
        assert "evaluating with Paddle Inference on cpu" in f.read()


def test_auto_keeps_dygraph_for_a_small_set_and_bad_values_are_refused(run_main, demo_data_dir,
                                                                        checkpoint, tmp_path):
    _test(run_main, demo_data_dir, checkpoint, tmp_path / "auto", "auto")
    with open(tmp_path / "auto" / "Childnet_Testing" / "metrics.json") as f:
        assert json.load(f)["backend"] == "dygraph"  # 16 images do not pay for an export
    proc = _test(run_main, demo_data_dir, checkpoint, tmp_path / "bad", "onnx", ok=False)
    assert proc.returncode != 0
    assert "TEST.INFERENCE 'onnx' is not one of auto, dygraph, paddle_inference" in proc.stdout + proc.stderr
