"""``test`` mode: evaluate a released or retrained checkpoint on DATA_DIR's val split (a class
folder, or CIFAR-10's test_batch with ``DATASET.NAME`` cifar10) and write ``metrics.json``
(``arch``: the Cream arch list, or the DARTS genotype as genotypes.json holds it);
``TEST.INFERENCE`` chooses between dygraph and the exported model in Paddle Inference
(``select_test_model``)."""
from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple

import paddle
from yacs.config import CfgNode

from lib.config import ConfigError
from lib.deploy import LOGITS_TOLERANCE, export_child_network, exported_logits_difference
from lib.engine.child import (ChildSpec, checkpoint_misfit, child_cost, child_loader_policy, create_child_model,
                              resolve_child)
from lib.engine.common import (RunContext, RunError, build_loaders, check_data_splits, checkpoint_named_by,
                               device_type, record_config)
from lib.engine.evaluate import EVAL_METRIC_NAMES, evaluate
from lib.models import CREAM_ARCHS, trained_network
from pimm.models import (CheckpointMismatchError, load_model_weights, read_checkpoint_file,
                         select_state_dict, weights_entry)
from pimm.utils import atomic_write_text, get_num_threads
from pimm.deploy import InferenceLayer, InferenceModel

__all__ = ["TEST_BACKENDS", "AUTO_MIN_IMAGES", "checkpoint_to_test", "load_weights_for_test",
           "select_test_model", "preflight", "run"]

_logger = logging.getLogger(__name__)

#: TEST.INFERENCE (see select_test_model)
TEST_BACKENDS = ("auto", "dygraph", "paddle_inference")
#: 'auto' exports only for evaluation sets at least this large: the export takes a few seconds
#: (to_static's conversion), which the faster predictor wins back after about a thousand images
#: for the smallest net (14 at 64 px) and after a few dozen for the 224 px nets (docs/BENCHMARKS.md)
AUTO_MIN_IMAGES = 1000


def _trained_with(checkpoint: Any) -> str:
    """`` (it was trained with NET.SELECTION 43)``, from the run config the checkpoint stores."""
    args = checkpoint.get("args") if isinstance(checkpoint, dict) else None
    net = args.get("NET") if isinstance(args, dict) else None
    if isinstance(net, dict) and net.get("MODEL"):
        return f" (it was trained with NET.MODEL {net['MODEL']})"
    trained = trained_network(args)
    if trained is None:
        return ""
    key = "NET.SELECTION" if isinstance(trained, int) else "NET.INPUT_ARCH"
    return f" (it was trained with {key} {trained})"


def checkpoint_to_test(cfg: CfgNode) -> str:
    """``RESUME_PATH``, the checkpoint the test evaluates; raises when it is unset or missing."""
    return checkpoint_named_by(cfg, "RESUME_PATH", "test", "the checkpoint (.pdparams or .pth.tar) to evaluate")


def load_weights_for_test(model: paddle.nn.Layer, path: str, spec: ChildSpec,
                          use_ema: bool) -> str:
    """Load a ``.pdparams`` or released PyTorch checkpoint into ``model``: the EMA weights when
    ``use_ema`` and the file has them (``state_dict_ema``, or ``model_ema`` of the PeleeNet
    reproduction's layout), else the plain ones. Returns which entry was used (``state_dict`` for
    a bare state dict)."""
    try:
        checkpoint = read_checkpoint_file(path)
        weights = weights_entry(checkpoint, use_ema) or "state_dict"
        state_dict = select_state_dict(checkpoint, path, use_ema=weights.endswith("_ema"))
        load_model_weights(model, state_dict, source=f"checkpoint {path}")
    except CheckpointMismatchError as err:
        hint = _trained_with(checkpoint) if spec.method == "cream" else ""
        raise checkpoint_misfit(f"checkpoint {path}", spec, err, hint) from err
    except ValueError as err:
        raise RunError(f"cannot use checkpoint {path}: {err}") from err
    return weights


def select_test_model(model: paddle.nn.Layer, image_size: int, backend: str, workdir: str,
                      num_images: int, logger: Optional[logging.Logger] = None,
                      threads: Optional[int] = None) -> Tuple[paddle.nn.Layer, str]:
    """The model the test mode should evaluate on ``num_images`` images, and its backend.

    ``backend``: 'dygraph' returns ``model``; 'paddle_inference' exports it into ``workdir`` and
    returns a Paddle Inference predictor (oneDNN on CPU) behind the layer interface; 'auto' does
    the latter on CPU for at least ``AUTO_MIN_IMAGES`` images (several times dygraph's speed on
    2 cores, docs/BENCHMARKS.md) and keeps dygraph otherwise, and on GPU (where no measurement
    showed a gain). The exported logits are checked against dygraph's on a random batch first:
    beyond ``LOGITS_TOLERANCE`` 'paddle_inference' raises and 'auto' falls back to dygraph with
    a warning.
    """
    if backend not in TEST_BACKENDS:
        raise ConfigError(f"TEST.INFERENCE {backend!r} is not one of {', '.join(TEST_BACKENDS)}")
    log = logger or _logger
    device = device_type()
    worth_exporting = device == "cpu" and num_images >= AUTO_MIN_IMAGES
    if backend == "dygraph" or (backend == "auto" and not worth_exporting):
        return model, "dygraph"
    prefix = os.path.join(workdir, "test_model")
    export_child_network(model, prefix, image_size)
    predictor = InferenceModel(prefix, device=device, threads=threads)
    difference = exported_logits_difference(model, predictor, image_size)
    if difference > LOGITS_TOLERANCE:
        message = (f"the exported model's logits differ from dygraph's by {difference:.2e} "
                   f"(relative), more than {LOGITS_TOLERANCE:g}")
        if backend == "paddle_inference":
            raise RuntimeError(message + "; set TEST.INFERENCE dygraph")
        log.warning("%s: evaluating in dygraph instead", message)
        return model, "dygraph"
    log.info("evaluating with Paddle Inference on %s (exported logits within %.1e of dygraph's)",
             device, difference)
    return InferenceLayer(predictor), "paddle_inference"


def preflight(cfg: CfgNode) -> None:
    """The launcher's checks before starting the processes (see ``lib.engine``)."""
    check_data_splits(cfg, ("val",))
    resolve_child(cfg)
    checkpoint_to_test(cfg)


def run(ctx: RunContext) -> Dict[str, Any]:
    """``test`` mode: evaluate ``RESUME_PATH`` on ``DATA_DIR/val``; writes ``metrics.json``."""
    cfg = ctx.cfg
    spec = resolve_child(cfg)
    _, loader = build_loaders(cfg, ctx, spec.image_size, policy=child_loader_policy(cfg, spec),
                              train=False)
    path = checkpoint_to_test(cfg)
    model = create_child_model(cfg, spec)
    weights = load_weights_for_test(model, path, spec, use_ema=bool(cfg.NET.EMA.USE))
    record_config(ctx)
    ctx.logger.info("testing %s (%s, %d px) from %s [%s] on %d images of %s", spec.source,
                    spec.name, spec.image_size, path, weights, len(loader.dataset),
                    os.path.join(str(cfg.DATA_DIR), "val"))
    log_name = "Test_EMA" if weights.endswith("_ema") else "Test"
    with tempfile.TemporaryDirectory(prefix="cream_test_") as workdir:
        eval_model, backend = select_test_model(
            model, spec.image_size, str(cfg.TEST.INFERENCE), workdir, num_images=len(loader.dataset),
            logger=ctx.logger, threads=get_num_threads())
        result = evaluate(eval_model, loader, ctx, log_name=log_name, progress_bar=True)
    metrics = OrderedDict(
        top1=result["prec1"], top5=result["prec5"], loss=result["loss"], images=result["images"],
        skipped_images=result["skipped_images"], seconds=result["seconds"], backend=backend,
        checkpoint=os.path.abspath(path),
        weights=weights,
        selection=spec.selection,
        arch=spec.arch_json,
        model=spec.model or None,
        image_size=spec.image_size,
        processes=ctx.world_size)
    if spec.selection in CREAM_ARCHS:
        entry = CREAM_ARCHS[spec.selection]
        metrics["published_top1"], metrics["published_top5"] = entry.top1, entry.top5
    cost = child_cost(model, spec)
    metrics.update((key, value) for key, value in cost.items() if key != "text")
    ctx.logger.info("* Prec@1 %.3f  Prec@5 %.3f  Loss %.4f  (%d images, %.1f s)", metrics["top1"],
                    metrics["top5"], metrics["loss"], metrics["images"], metrics["seconds"])
    ctx.logger.info("summary: %s (%s), %s: Prec@1 %.2f %% on %s", spec.name, spec.source, cost["text"],
                    metrics["top1"], os.path.join(str(cfg.DATA_DIR), "val"))
    if ctx.is_primary:
        atomic_write_text(json.dumps(metrics, indent=2), os.path.join(ctx.run_dir, "metrics.json"))
        for name in EVAL_METRIC_NAMES:
            ctx.writer.add_scalar(f"test/{name}", result[name], 0)
    return dict(metrics)
