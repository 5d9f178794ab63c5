"""The lite train-to-inference chain: the smoke test Paddle model repositories ship (TIPC 'lite'),
for any network a retrain config names.

On a tiny demo tree it runs, in this order, ``data`` (generate or check the tree), ``train`` (two
epochs of the config's recipe through the retrain engine), ``evaluate`` (the test engine on the
checkpoint, in dygraph), ``export`` (``paddle.jit.save`` with the evaluation transform recorded),
``infer`` (top-5 of the validation images with the exported model in Paddle Inference) and
``compare`` (the exported model on its recorded transform against dygraph on the evaluation's
own input). Each stage reports one line; the first failure stops the chain as a
:class:`StageFailed` naming the stage.

Everything is made small by :func:`lite_overrides` (epochs, batch, image size, workers); the
recipe's learning rate is scaled to the small batch by the linear rule.
"""
from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import paddle

from lib.config import load_config
from lib.deploy import LOGITS_TOLERANCE, export_child_network, predict_files
from lib.engine.child import (child_eval_preprocess, child_loader_policy, create_child_model,
                              resolve_child)
from lib.engine.common import RunError, build_loaders, finish_run, prepare_run
from lib.engine.test import load_weights_for_test
from pimm.data import ImageDataset
from pimm.data.dataset import load_rgb
from pimm.data.demo import make_demo_dataset
from pimm.deploy import InferenceModel, eval_transform_from_info, relative_difference
from pimm.utils import SUMMARY_FILE

__all__ = ["STAGES", "StageFailed", "LiteChainOptions", "lite_overrides", "run_lite_chain",
           "compare_with_dygraph"]

STAGES = ("data", "train", "evaluate", "export", "infer", "compare")
#: the demo tree the chain generates when given none: 4 classes, 8 train + 4 val images each
DEMO_TREE = dict(num_classes=4, train_per_class=8, val_per_class=4, image_size=48, seed=0)
#: the largest difference between the evaluation's input and the export's recorded transform
INPUT_TOLERANCE = 1e-4


class StageFailed(Exception):
    """A stage of the chain failed: ``stage`` names it, ``error`` is what it raised."""

    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(f"stage '{stage}' failed: {error}")
        self.stage, self.error = stage, error


@dataclass
class LiteChainOptions:
    """``config`` (a retrain YAML) with ``overrides`` (KEY VALUE pairs, applied after the lite
    ones); runs go to ``work_dir/runs``, the demo tree (unless ``data_dir``) to
    ``work_dir/data``."""

    config: str
    overrides: Sequence[str] = ()
    work_dir: str = "./experiments/workspace/lite_chain"
    data_dir: Optional[str] = None
    name: str = "lite"
    epochs: int = 2
    batch_size: int = 8
    image_size: int = 32


@dataclass
class _State:
    options: LiteChainOptions
    data_dir: str = ""
    num_classes: int = 0
    cfg: Any = None
    run_dir: str = ""
    checkpoint: str = ""
    model: Optional[paddle.nn.Layer] = None
    prefix: str = ""
    predictor: Optional[InferenceModel] = None
    results: Dict[str, Any] = field(default_factory=dict)


def lite_overrides(options: LiteChainOptions, num_classes: int, config_lr: float,
                   global_batch: int) -> List[str]:
    """What makes a recipe tiny: the demo tree, ``options.epochs`` epochs without warm-up or
    cool-down, batches of ``options.batch_size`` at ``options.image_size`` px in this process, no
    resume, and the recipe's LR scaled linearly from its global batch to the small one."""
    lr = config_lr * options.batch_size / max(1, global_batch)
    return ["DATA_DIR", options.data_dir, "SAVE_PATH", os.path.join(options.work_dir, "runs"),
            "MODEL", options.name, "AUTO_RESUME", "False", "RESUME_PATH", "",
            "INITIAL_CHECKPOINT", "", "EPOCHS", str(options.epochs), "WARMUP_EPOCHS", "0",
            "COOLDOWN_EPOCHS", "0", "LR", repr(lr), "DATASET.NUM_CLASSES", str(num_classes),
            "DATASET.BATCH_SIZE", str(options.batch_size), "DATASET.VAL_BATCH_MUL", "1",
            "DATASET.IMAGE_SIZE", str(options.image_size),
            "DATASET.SELECTION_IMAGE_SIZE", "False", "WORKERS", "0", "NUM_GPU", "1",
            "LOG_INTERVAL", "50", "RECOVERY_INTERVAL", "0", "TEST.INFERENCE", "dygraph"]


def _config(state: _State, *extra: str):
    options = state.options
    recipe = load_config(options.config, options.overrides)
    base = lite_overrides(options, state.num_classes, float(recipe.LR),
                          int(recipe.NUM_GPU) * int(recipe.DATASET.BATCH_SIZE))
    return load_config(options.config, [*base, *options.overrides, *extra])


def _run_engine(cfg, mode: str) -> Dict[str, Any]:
    from lib.engine import engine_for

    ctx = prepare_run(cfg, mode)
    try:
        return dict(engine_for(mode, str(cfg.METHOD)).run(ctx), run_dir=ctx.run_dir)
    finally:
        finish_run(ctx)


# ---- the stages: each returns its one-line report --------------------------------------------
def _data(state: _State) -> str:
    options = state.options
    if options.data_dir is None:
        options.data_dir = make_demo_dataset(os.path.join(options.work_dir, "data"), **DEMO_TREE)
    counts = {}
    for split in ("train", "val"):
        root = os.path.join(options.data_dir, split)
        if not os.path.isdir(root):
            raise RunError(f"no {split}/ folder in {options.data_dir}: give a demo tree "
                           "(tools/make_demo_data.py) or leave --data out to generate one")
        dataset = ImageDataset(root)
        counts[split] = len(dataset)
        state.num_classes = max(state.num_classes, len(dataset.classes))
    state.data_dir = options.data_dir
    return (f"{state.num_classes} classes, {counts['train']} train / {counts['val']} val images "
            f"in {state.data_dir}")


def _summary_rows(run_dir: str) -> List[Dict[str, str]]:
    with open(os.path.join(run_dir, SUMMARY_FILE), newline="") as f:
        return list(csv.DictReader(f))


def _train(state: _State) -> str:
    state.cfg = _config(state)
    result = _run_engine(state.cfg, "retrain")
    state.run_dir = result["run_dir"]
    state.checkpoint = os.path.join(state.run_dir, "last.pdparams")
    rows = _summary_rows(state.run_dir)
    losses = [float(row["train_loss"]) for row in rows]
    if len(rows) != state.options.epochs or not all(math.isfinite(v) for v in losses):
        raise RunError(f"training wrote {len(rows)} epoch(s) of {state.options.epochs}, train "
                       f"losses {losses}: see {os.path.join(state.run_dir, 'retrain.log')}")
    if not os.path.isfile(state.checkpoint):
        raise RunError(f"training wrote no {state.checkpoint}")
    spec = resolve_child(state.cfg)
    return (f"{spec.name} at {spec.image_size} px, {len(rows)} epochs, LR {state.cfg.LR:.3g}: "
            f"train loss {' -> '.join(f'{v:.4f}' for v in losses)}; eval Prec@1 "
            f"{float(rows[-1]['eval_prec1']):.2f} %; {state.checkpoint}")


def _evaluate(state: _State) -> str:
    cfg = _config(state, "MODEL", f"{state.options.name}_test", "RESUME_PATH", state.checkpoint)
    metrics = _run_engine(cfg, "test")
    state.results["evaluate"] = metrics
    return (f"Prec@1 {metrics['top1']:.2f} %, Prec@5 {metrics['top5']:.2f} %, loss "
            f"{metrics['loss']:.4f} on {metrics['images']} images ({metrics['backend']}, "
            f"{metrics['weights']})")


def _export(state: _State) -> str:
    cfg = state.cfg
    spec = resolve_child(cfg)
    model = create_child_model(cfg, spec)
    weights = load_weights_for_test(model, state.checkpoint, spec, use_ema=bool(cfg.NET.EMA.USE))
    model.eval()
    state.model = model
    state.prefix = os.path.join(state.run_dir, "inference", "model")
    classes = ImageDataset(os.path.join(state.data_dir, "val")).classes
    start = time.time()
    files = export_child_network(model, state.prefix, spec.image_size, arch=spec.arch_json,
                                 class_names=classes, source=f"{state.checkpoint} ({weights})",
                                 preprocess=child_eval_preprocess(cfg, spec),
                                 model_name=spec.model or None)
    return f"{', '.join(sorted(files.values()))} in {time.time() - start:.1f} s"


def _infer(state: _State) -> str:
    state.predictor = InferenceModel(state.prefix, threads=1)
    dataset = ImageDataset(os.path.join(state.data_dir, "val"))
    paths = [path for path, _ in dataset.samples]
    predictions = predict_files(state.predictor, paths, topk=5)
    hits = sum(int(top[0][0] == label) for top, (_, label) in zip(predictions, dataset.samples))
    state.results["infer_top1"] = 100.0 * hits / len(paths)
    first = "  ".join(f"{name or index} {prob:.3f}" for index, name, prob in predictions[0])
    return (f"top-1 {state.results['infer_top1']:.2f} % on {len(paths)} images; "
            f"{os.path.basename(paths[0])}: {first}")


def compare_with_dygraph(model: paddle.nn.Layer, predictor: InferenceModel, loader: Any,
                         transform: Callable, paths: Sequence[str]) -> Dict[str, float]:
    """The exported model on the transform it records, against ``model`` in dygraph on the
    evaluation ``loader``'s own batches (the same images, in ``paths`` order): ``input`` (largest
    absolute difference of the inputs), ``logits`` (relative difference) and ``agreement`` (share
    of equal top-1 classes). Raises RuntimeError beyond ``INPUT_TOLERANCE``/``LOGITS_TOLERANCE``."""
    model.eval()
    inputs, expected = [], []
    with paddle.no_grad():
        for images, _ in loader:
            inputs.append(images.numpy())
            expected.append(model(images).numpy())
    engine_input, expected = np.concatenate(inputs), np.concatenate(expected)
    recorded_input = np.stack([transform(load_rgb(path)) for path in paths])
    if recorded_input.shape != engine_input.shape:
        raise RuntimeError(f"the recorded transform gives inputs {list(recorded_input.shape)}, "
                           f"the evaluation {list(engine_input.shape)}")
    result = {"input": float(np.abs(recorded_input - engine_input).max())}
    actual = predictor(recorded_input)
    result["logits"] = relative_difference(actual, expected)
    result["agreement"] = float(np.mean(actual.argmax(axis=1) == expected.argmax(axis=1)))
    if result["input"] > INPUT_TOLERANCE:
        raise RuntimeError(f"the export's recorded transform does not reproduce the evaluation's "
                           f"input: largest difference {result['input']:.2e}")
    if result["logits"] > LOGITS_TOLERANCE:
        raise RuntimeError(f"the exported model's logits differ from dygraph's by "
                           f"{result['logits']:.2e} (relative), more than {LOGITS_TOLERANCE:g}")
    return result


def _compare(state: _State) -> str:
    cfg, spec = state.cfg, resolve_child(state.cfg)
    _, loader = build_loaders(cfg, None, spec.image_size, policy=child_loader_policy(cfg, spec),
                              train=False)
    paths = [path for path, _ in loader.dataset.samples]
    result = compare_with_dygraph(state.model, state.predictor, loader,
                                  eval_transform_from_info(state.predictor.info), paths)
    evaluated = state.results["evaluate"]["top1"]
    return (f"inputs within {result['input']:.1e}, logits within {result['logits']:.1e} "
            f"(tolerance {LOGITS_TOLERANCE:g}), top-1 agreement {100 * result['agreement']:.0f} %; "
            f"top-1 {state.results['infer_top1']:.2f} % exported vs {evaluated:.2f} % evaluated")


_STAGE_FUNCTIONS = {"data": _data, "train": _train, "evaluate": _evaluate, "export": _export,
                    "infer": _infer, "compare": _compare}


def run_lite_chain(options: LiteChainOptions,
                   report: Callable[[str, str], None] = lambda stage, line: None) -> Dict[str, str]:
    """Run every stage of :data:`STAGES` in order, calling ``report(stage, line)`` after each;
    returns the lines by stage. The first failing stage raises :class:`StageFailed`."""
    state = _State(options)
    lines: Dict[str, str] = {}
    for stage in STAGES:
        try:
            lines[stage] = _STAGE_FUNCTIONS[stage](state)
        except Exception as err:  # noqa: BLE001  any failure, named by its stage
            raise StageFailed(stage, err) from err
        report(stage, lines[stage])
    return lines
