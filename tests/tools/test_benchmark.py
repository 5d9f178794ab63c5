"""tools/benchmark.py: the JSON line's fields and values on tiny settings (never its speed)."""
import json
import subprocess
import sys

import paddle
import pytest

from lib.models import SupernetPath, build_childnet, build_supernet
from lib.search import MetaMatchingNetwork
from pimm.utils import profile

FIELDS = {"model", "mode", "meta", "backend", "arch", "batch_size", "image_size", "threads", "data",
          "warmup", "steps", "images_per_s", "ms_per_step", "ms_per_step_median", "ms_per_step_best",
          "step_ms", "peak_rss_mb", "mflops", "gflops_per_s", "cpu", "cpu_cores", "device", "gpu",
          "paddle", "python"}
# a small search: the [0, 100] MFLOPs supernet, a board of 2 paths, slices of 2 images
TINY_SEARCH = """
SUPERNET:
  POOL_SIZE: 2
  SLICE: 2
  FLOPS_MINIMUM: 0
  FLOPS_MAXIMUM: 100
  PICK_METHOD: 'meta'
  UPDATE_2ND: True
NET:
  EMA:
    USE: False
"""


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
    assert result["threads"] == 1
    assert result["device"] == paddle.device.get_device()  # whatever Paddle runs on (cpu, gpu:0)


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


@pytest.mark.parametrize("transforms, workers, steps", [("retrain", 0, 3), ("eval", 0, 1),
                                                       ("search", 1, 2)])
def test_loader_mode_times_the_pipeline(bench, demo_data_dir, transforms, workers, steps):
    # a child process that is not one of the loader's workers (as a test run leaves some) is left out
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        code, out, err = bench("--mode", "loader", "--transforms", transforms, "--data", demo_data_dir,
                               "--workers", str(workers), "--batch-size", "4", "--image-size", "32",
                               "--steps", str(steps), "--warmup", "1", "--threads", "1")
    finally:
        other.kill()
        other.wait()
    assert code == 0, err
    result = _result(out)
    assert set(result) == FIELDS | {"transforms", "workers", "worker_peak_rss_mb",
                                    "worker_cpu_ms_per_image", "main_cpu_ms_per_image",
                                    "stage_cpu_ms_per_image"}
    assert (result["model"], result["mode"], result["transforms"]) == ("loader", "loader", transforms)
    assert result["mflops"] is None and result["gflops_per_s"] is None and result["image_size"] == 32
    assert len(result["step_ms"]) == steps
    # ms_per_step is rounded to 1 us: fast steps of tiny images leave a few 1e-3 of rounding
    assert result["images_per_s"] == pytest.approx(4000.0 / result["ms_per_step"], rel=1e-2)
    # a worker process is measured while it runs; without workers there is none
    assert (result["worker_peak_rss_mb"] > 50) if workers else result["worker_peak_rss_mb"] is None
    # CPU time per image: without workers this process decodes and augments; a worker's share
    # of a few tiny batches can be under the kernel's 10 ms tick
    worker_cpu, main_cpu = result["worker_cpu_ms_per_image"], result["main_cpu_ms_per_image"]
    assert (worker_cpu >= 0) if workers else (worker_cpu is None and main_cpu > 0)
    stages = result["stage_cpu_ms_per_image"]
    augment = {"retrain": "RandAugment", "search": "ColorJitter", "eval": "CenterCrop"}[transforms]
    assert list(stages)[0] == "decode" and augment in stages and "normalize" in stages
    assert ("batch_augment" in stages) == (transforms != "eval")  # random erasing when training
    assert all(value >= 0 for value in stages.values())


def test_loader_mode_needs_enough_batches(bench, demo_data_dir):
    code, _, err = bench("--mode", "loader", "--data", demo_data_dir, "--workers", "0",
                         "--batch-size", "16", "--image-size", "32", "--steps", "5", "--threads", "1")
    assert code == 2 and "gives 3 batches of 16 per epoch, fewer than the 8 to time" in err


@pytest.fixture
def tiny_search_config(tmp_path):
    path = tmp_path / "tiny_search.yaml"
    path.write_text(TINY_SEARCH)
    return str(path)


@pytest.mark.parametrize("meta", [False, True])
def test_search_step_samples_paths_and_takes_meta_updates(bench, tiny_search_config, monkeypatch,
                                                          meta):
    updates = []
    original = MetaMatchingNetwork.update

    def counting(self, *args, **kwargs):
        updates.append(args[4])  # the sampled path
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MetaMatchingNetwork, "update", counting)
    code, out, err = bench("--mode", "search", *(["--meta"] if meta else []), "--config",
                           tiny_search_config, "--batch-size", "4", "--image-size", "32",
                           "--steps", "2", "--warmup", "1", "--threads", "1")
    assert code == 0, err
    result = _result(out)
    assert set(result) == FIELDS | {"board"}
    assert (result["model"], result["mode"], result["meta"]) == ("supernet[0,100]", "search", meta)
    assert len(result["board"]) == 2 and result["board"][0] != result["board"][1]  # POOL_SIZE 2
    paths = result["arch"]
    assert len(paths) == 2 and all(len(path) == 7 and path[0] == path[-1] == [0] for path in paths)
    # every timed step and the warm-up step updated the meta layer, on the path it sampled
    assert len(updates) == (3 if meta else 0)
    if meta:
        assert updates[1:] == paths
    supernet, _, _ = build_supernet(0, 100)
    expected = sum(profile(SupernetPath(supernet, path), (1, 3, 32, 32))[0] for path in paths) / 2e6
    assert result["mflops"] == pytest.approx(expected, abs=1e-3)  # mean over the sampled paths
    _check_timing(result, 4, 2, work=3.0)


def test_search_refuses_what_it_cannot_time(bench, tmp_path, tiny_search_config):
    code, _, err = bench("--mode", "search", "--meta", "--config", tiny_search_config,
                         "--override", "SUPERNET.PICK_METHOD", "top1", "--threads", "1",
                         "--image-size", "32", "--batch-size", "4")
    assert code == 2 and "takes no meta-matching updates" in err
    code, _, err = bench("--mode", "search", "--config", tiny_search_config, "--override",
                         "SUPERNET.NO_SUCH_KEY", "1", "--threads", "1")
    assert code == 2 and "SUPERNET.NO_SUCH_KEY" in err
    code, _, err = bench("--mode", "search", "--config", str(tmp_path / "none.yaml"), "--threads",
                         "1", "--image-size", "32", "--batch-size", "4")
    assert code == 2 and "config file not found" in err


@pytest.mark.parametrize("argv, message", [
    ([], "give exactly one of a selection, an arch list or the supernet"),
    (["--mode", "search", "--selection", "14"], "trains the supernet on sampled paths"),
    (["--selection", "14", "--meta"], "use mode 'search'"),
    (["--selection", "15"], "selection 15 is not a released net"),
    (["--selection", "14", "--backend", "paddle_inference", "--mode", "train"], "only runs inference"),
    (["--arch", "[[0], [3], [0]]"], "invalid Cream arch"),
    (["--selection", "14", "--path", "[[0], [3], [3], [3], [3], [3], [0]]"], "runs through the supernet"),
    (["--supernet", "--flops-range", "0", "100", "--path", "[[0], [3, 3, 3], [3], [3], [3], [3], [0]]"],
     "does not fit the supernet"),
    (["--selection", "14", "--data", "/no/such/folder"], "/no/such/folder/val does not exist"),
    (["--selection", "14", "--steps", "0"], "steps must be >= 1"),
    (["--selection", "14", "--amp", "O1"], "AMP O1 needs a GPU"),
    (["--selection", "14", "--tensorrt"], "tensorrt runs the exported model"),
    (["--mode", "loader"], "mode 'loader' reads a folder"),
    (["--mode", "loader", "--data", "/tmp", "--workers", "4"], "needs warmup >= workers (4)"),
    (["--mode", "loader", "--transforms", "search", "--selection", "14", "--data", "/tmp"],
     "the search's pipeline has no selection"),
])
def test_bad_arguments_exit_2_with_the_reason(bench, argv, message):
    code, out, err = bench(*argv, "--threads", "1", "--image-size", "32", "--batch-size", "1")
    assert code == 2 and out == ""
    assert message in err and err.startswith("error: ")
