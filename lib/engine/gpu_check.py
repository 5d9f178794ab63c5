"""The GPU checks in one call (``tools/gpu_check.py``): what nothing on a CPU machine can run.

Without a CUDA build of Paddle and a visible GPU, :func:`run_gpu_checks` returns
``{"skipped": <why>}`` and does nothing. With one, each check runs on its own (a failure is
recorded with its error and the others still run):

* ``train_steps``: retraining steps of net 14 on one synthetic batch in float32 and AMP O1/O2
  (float16; bfloat16 too where the GPU has it): the loss must stay finite and fall;
  images/s of each;
* ``logits``: eval-mode logits of net 287 under O1 autocast and of its O2 (float16-weight) copy
  against float32, within ``LOGIT_TOLERANCE`` (relative to the largest logit);
* ``loss_scaler_resume``: a demo retrain of one epoch with AMP O1 whose checkpoint is resumed for
  a second epoch: the resumed loss scaler must carry the first epoch's scale;
* ``search``: one epoch of the demo search with AMP O1 (board, distillation and the float32
  meta-matching updates every other step); the meta updates must have happened;
* ``benchmark``: ``tools/benchmark.py`` figures on the GPU (train 287 float32/O1, the search step
  with its meta update, dygraph and Paddle Inference evaluation, and TensorRT float32/fp16 where
  this Paddle build has ``paddle.tensorrt``), the exported model's logits against dygraph's.

The result is one JSON-able dict: ``ok`` (every check passed), the device, each check's
``ok``/figures/error and its seconds.
"""
from __future__ import annotations

import copy
import math
import os
import tempfile
import time
import traceback
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import paddle

from lib.config import load_config, shipped_config
from lib.engine.common import finish_run, prepare_run
from lib.engine.retrain import train_step
from lib.models import build_childnet
from pimm.data import make_demo_dataset
from pimm.deploy import InferenceModel, export_model, relative_difference
from pimm.loss import LabelSmoothingCrossEntropy
from pimm.utils.amp import Amp
from pimm.utils.benchmark import machine_description

__all__ = ["gpu_available", "run_gpu_checks", "LOGIT_TOLERANCE"]

#: float16 logits against float32, relative to the largest logit
LOGIT_TOLERANCE = {"float16": 2e-2, "bfloat16": 5e-2}
_EXPORT_TOLERANCE = 1e-4  # Paddle Inference float32 against dygraph


def gpu_available() -> bool:
    return paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def _bf16_supported() -> bool:
    check = getattr(paddle.amp, "is_bfloat16_supported", None)
    return bool(check and check())


def _amp_settings() -> List[tuple]:
    settings = [("O0", "float16"), ("O1", "float16"), ("O2", "float16")]
    if _bf16_supported():
        settings += [("O1", "bfloat16"), ("O2", "bfloat16")]
    return settings


def _train_steps(steps: int = 8, batch: int = 64) -> Dict[str, Any]:
    rng = np.random.default_rng(0)
    images = paddle.to_tensor(rng.standard_normal((batch, 3, 64, 64), dtype=np.float32))
    labels = paddle.to_tensor(rng.integers(0, 10, batch))
    loss_fn = LabelSmoothingCrossEntropy(0.1)
    figures, ok = {}, True
    for level, dtype in _amp_settings():
        paddle.seed(0)
        model = build_childnet(14, num_classes=10)
        optimizer = paddle.optimizer.Momentum(0.05, parameters=model.parameters())
        amp = Amp(level, dtype)
        model, optimizer = amp.decorate(model, optimizer)
        model.train()
        losses = []
        paddle.device.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            _, loss = train_step(model, images, labels, optimizer, loss_fn, amp=amp)
            losses.append(float(loss))
        seconds = time.perf_counter() - start
        falls = all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
        ok = ok and falls
        figures[f"{level}_{dtype}"] = {"losses": [round(v, 4) for v in losses], "falls": falls,
                                       "images_per_s": round(steps * batch / seconds, 1),
                                       "scaler": amp.state_dict()}
    return {"ok": ok, "figures": figures}


def _logits() -> Dict[str, Any]:
    paddle.seed(0)
    model = build_childnet(287)
    model.eval()
    images = paddle.to_tensor(np.random.default_rng(1).standard_normal((8, 3, 224, 224),
                                                                       dtype=np.float32))
    with paddle.no_grad():
        reference = model(images).numpy()
    figures, ok = {}, True
    for level, dtype in _amp_settings()[1:]:
        candidate = model
        if level == "O2":
            candidate = paddle.amp.decorate(models=copy.deepcopy(model), level="O2", dtype=dtype)
        with paddle.no_grad(), Amp(level, dtype).autocast():
            logits = candidate(images).astype("float32").numpy()
        error = relative_difference(logits, reference)
        within = error < LOGIT_TOLERANCE[dtype]
        ok = ok and within
        figures[f"{level}_{dtype}"] = {"relative_difference": float(error), "within": within,
                                       "same_top1": float((logits.argmax(1) ==
                                                           reference.argmax(1)).mean())}
    return {"ok": ok, "tolerance": LOGIT_TOLERANCE, "figures": figures}


def _run_mode(mode: str, engine: Callable, config: str, overrides: List[str]) -> Tuple[Any, Any]:
    """``(engine's result, its RunContext)`` of one run of ``mode``."""
    ctx = prepare_run(load_config(config, overrides), mode)
    try:
        return engine(ctx), ctx
    finally:
        finish_run(ctx)


def _loss_scaler_resume(workdir: str, demo: str) -> Dict[str, Any]:
    from lib.engine import retrain

    common = ["DATA_DIR", demo, "SAVE_PATH", workdir, "MODEL", "amp_retrain", "WORKERS", "2",
              "DATASET.NUM_CLASSES", "4", "DATASET.BATCH_SIZE", "16", "AMP", "O1",
              "AUTO_RESUME", "True", "RESUME_PATH", "", "LOG_INTERVAL", "1"]
    config = shipped_config("retrain", "14.yaml")
    _run_mode("retrain", retrain.run, config, common + ["EPOCHS", "1"])
    _, ctx = _run_mode("retrain", retrain.run, config, common + ["EPOCHS", "2"])
    with open(os.path.join(ctx.run_dir, "retrain.log"), encoding="utf-8") as log:
        lines = [line.strip() for line in log if "resumed the loss scaler" in line]
    return {"ok": bool(lines), "log": lines[-1] if lines else "no 'resumed the loss scaler' line"}


def _search(workdir: str, demo: str) -> Dict[str, Any]:
    from lib.engine import search

    result, _ = _run_mode("train", search.run, shipped_config("train", "demo.yaml"), [
        "DATA_DIR", demo, "SAVE_PATH", workdir, "MODEL", "amp_search", "WORKERS", "2",
        "DATASET.NUM_CLASSES", "4", "DATASET.BATCH_SIZE", "16", "AMP", "O1", "EPOCHS", "1",
        "SUPERNET.META_STA_EPOCH", "-1", "SUPERNET.UPDATE_ITER", "2", "LOG_INTERVAL", "1"])
    train = result["train"]
    return {"ok": train["meta_updates"] > 0 and math.isfinite(train["loss"]),
            "meta_updates": train["meta_updates"], "loss": train["loss"],
            "prec1": train["prec1"], "epoch_times": result["epoch_times"]}


def _benchmark(workdir: str) -> Dict[str, Any]:
    from lib.engine.benchmark import BenchmarkOptions, run_benchmark

    runs = {
        "train_287_fp32": BenchmarkOptions(mode="train", selection=287, batch_size=64),
        "train_287_O1": BenchmarkOptions(mode="train", selection=287, batch_size=64, amp="O1"),
        "search_meta_O0": BenchmarkOptions(mode="search", meta=True, batch_size=16, steps=5),
        "infer_287_dygraph": BenchmarkOptions(mode="infer", selection=287, batch_size=64),
        "infer_287_inference": BenchmarkOptions(mode="infer", selection=287, batch_size=64,
                                                backend="paddle_inference"),
        "infer_287_inference_fp16": BenchmarkOptions(mode="infer", selection=287, batch_size=64,
                                                     backend="paddle_inference", amp="O1"),
    }
    try:
        import paddle.tensorrt  # noqa: F401  (GPU builds with TensorRT)

        for amp in ("O0", "O1"):
            runs[f"infer_287_tensorrt_{amp}"] = BenchmarkOptions(
                mode="infer", selection=287, batch_size=64, backend="paddle_inference",
                tensorrt=True, amp=amp)
    except ImportError:
        runs["tensorrt"] = None
    figures, ok = {}, True
    keys = ("images_per_s", "ms_per_step_median", "peak_gpu_memory_mb", "mflops", "gflops_per_s")
    for name, opts in runs.items():
        if opts is None:
            figures[name] = "skipped: this Paddle build has no paddle.tensorrt"
            continue
        try:
            result = run_benchmark(opts)
            figures[name] = {k: result.get(k) for k in keys}
        except Exception as err:  # one failing configuration must not hide the others
            ok = False
            figures[name] = {"error": f"{type(err).__name__}: {err}"}
    prefix = os.path.join(workdir, "export", "cream_287")
    paddle.seed(0)
    model = build_childnet(287)
    model.eval()
    export_model(model, prefix, 224)
    images = np.random.default_rng(2).standard_normal((4, 3, 224, 224)).astype(np.float32)
    with paddle.no_grad():
        expected = model(paddle.to_tensor(images)).numpy()
    error = relative_difference(InferenceModel(prefix, device="gpu")(images), expected)
    figures["export_relative_difference"] = float(error)
    return {"ok": ok and error < _EXPORT_TOLERANCE, "figures": figures}


def run_gpu_checks() -> Dict[str, Any]:
    """Run every check on the GPU (see the module doc); ``{"skipped": ...}`` without one."""
    if not gpu_available():
        return {"skipped": "no GPU: this Paddle build has no CUDA or no GPU is visible; the GPU "
                           "checks need paddlepaddle-gpu on a machine with a GPU"}
    paddle.set_device("gpu")
    results: Dict[str, Any] = {"machine": machine_description(), "checks": {}}
    with tempfile.TemporaryDirectory(prefix="cream_gpu_check_") as workdir:
        demo = make_demo_dataset(os.path.join(workdir, "demo"), num_classes=4, train_per_class=32,
                                 val_per_class=8, image_size=64, seed=0)
        checks = {"train_steps": _train_steps, "logits": _logits,
                  "loss_scaler_resume": lambda: _loss_scaler_resume(workdir, demo),
                  "search": lambda: _search(workdir, demo),
                  "benchmark": lambda: _benchmark(workdir)}
        for name, check in checks.items():
            start = time.perf_counter()
            try:
                outcome = check()
            except Exception as err:  # recorded; the remaining checks still run
                outcome = {"ok": False, "error": f"{type(err).__name__}: {err}",
                           "traceback": traceback.format_exc(limit=6)}
            outcome["seconds"] = round(time.perf_counter() - start, 1)
            results["checks"][name] = outcome
    results["ok"] = all(check["ok"] for check in results["checks"].values())
    return results
