"""tools/benchmark.py: the JSON line's fields and values on tiny settings (never its speed)."""
import json

import pytest

from lib.models import build_childnet
from pimm.utils import profile

FIELDS = {"model", "mode", "backend", "arch", "batch_size", "image_size", "threads", "data", "warmup",
          "steps", "images_per_s", "ms_per_step", "ms_per_step_median", "ms_per_step_best", "step_ms",
          "peak_rss_mb", "mflops", "gflops_per_s", "cpu", "cpu_cores", "device", "gpu", "paddle", "python"}


@pytest.fixture
def bench(load_tool, capsys):
    tool = load_tool("benchmark")

    def run(*argv):
        code = tool.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _result(out: str) -> dict:
    lines = out.strip().splitlines()
    assert len(lines) == 1, out  # exactly one JSON line on stdout
    return json.loads(lines[0])


def _check_timing(result: dict, batch: int, steps: int, work: float) -> None:
    assert len(result["step_ms"]) == steps
    assert result["ms_per_step_best"] <= result["ms_per_step_median"]
    assert result["images_per_s"] == pytest.approx(batch * 1000.0 / result["ms_per_step"], rel=1e-3)
    assert result["gflops_per_s"] == pytest.approx(
        result["mflops"] * work * result["images_per_s"] / 1000.0, rel=1e-3, abs=1e-3)
    assert result["peak_rss_mb"] > 50
    assert result["threads"] == 1 and result["device"] == "cpu"


def test_infer_and_train_json_fields(bench):
    code, out, _ = bench("--selection", "14", "--mode", "infer", "--batch-size", "2", "--image-size", "32",
                         "--steps", "2", "--warmup", "1", "--threads", "1")
    assert code == 0
    infer = _result(out)
    assert set(infer) == FIELDS
    macs, _ = profile(build_childnet(14), (1, 3, 32, 32))
    assert infer["mflops"] == pytest.approx(macs / 1e6, abs=1e-3)  # thop count at the benchmark's size
    assert (infer["model"], infer["mode"], infer["backend"]) == ("cream_14", "infer", "dygraph")
    assert infer["arch"] == [[0], [3], [3, 3], [3, 3], [3], [3], [0]]
    assert (infer["batch_size"], infer["image_size"], infer["steps"], infer["warmup"]) == (2, 32, 2, 1)
    _check_timing(infer, 2, 2, work=1.0)

    code, out, _ = bench("--selection", "14", "--mode", "train", "--batch-size", "2", "--image-size", "32",
                         "--steps", "1", "--warmup", "0", "--threads", "1")
    assert code == 0
    train = _result(out)
    assert train["mode"] == "train" and train["mflops"] == infer["mflops"]
    _check_timing(train, 2, 1, work=3.0)


def test_supernet_path_on_paddle_inference(bench):
    path = "[[0], [3], [3], [3], [3], [3], [0]]"
    code, out, _ = bench("--supernet", "--flops-range", "0", "100", "--path", path, "--mode", "infer",
                         "--backend", "paddle_inference", "--batch-size", "2", "--image-size", "32",
                         "--steps", "1", "--warmup", "0", "--threads", "1")
    assert code == 0
    result = _result(out)
    assert result["model"] == "supernet[0,100]" and result["backend"] == "paddle_inference"
    assert result["arch"] == [[0], [3], [3], [3], [3], [3], [0]]
    _check_timing(result, 2, 1, work=1.0)


def test_real_loader_with_demo_data(bench, demo_data_dir):
    code, out, _ = bench("--selection", "14", "--mode", "train", "--data", demo_data_dir, "--workers", "0",
                         "--batch-size", "4", "--image-size", "32", "--steps", "2", "--warmup", "0",
                         "--threads", "1", "--no-ema")
    assert code == 0
    result = _result(out)
    assert result["data"] == demo_data_dir
    _check_timing(result, 4, 2, work=3.0)


@pytest.mark.parametrize("argv, message", [
    (["--selection", "15"], "selection 15 is not a released net"),
    (["--selection", "14", "--backend", "paddle_inference", "--mode", "train"], "only runs inference"),
    (["--arch", "[[0], [3], [0]]"], "invalid Cream arch"),
    (["--selection", "14", "--path", "[[0], [3], [3], [3], [3], [3], [0]]"], "runs through the supernet"),
    (["--supernet", "--flops-range", "0", "100", "--path", "[[0], [3, 3, 3], [3], [3], [3], [3], [0]]"],
     "does not fit the supernet"),
    (["--selection", "14", "--data", "/no/such/folder"], "/no/such/folder/val does not exist"),
    (["--selection", "14", "--steps", "0"], "steps must be >= 1"),
])
def test_bad_arguments_exit_2_with_the_reason(bench, argv, message):
    code, out, err = bench(*argv, "--threads", "1", "--image-size", "32", "--batch-size", "1")
    assert code == 2 and out == ""
    assert message in err and err.startswith("error: ")
