"""Two CPU ranks (gloo) through paddle.distributed.launch agree with one process: gradients of a
global batch through DataParallel, and evaluation over a validation set whose size does not divide
by the world size (the sharded loader pads it with duplicates that must not be counted).

The launcher runs this file as its worker script (``python -m paddle.distributed.launch
--nproc_per_node 2 test_distributed.py OUT DATA``); pytest runs the test below.
"""
import json
import logging
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

pytestmark = pytest.mark.e2e  # two ranks through paddle.distributed.launch

GLOBAL_BATCH = 4


def _config(data_dir, save_path):
    from lib.config import load_config

    return load_config(None, [
        "DATA_DIR", str(data_dir), "SAVE_PATH", str(save_path), "MODEL", "dist", "WORKERS", "0",
        "DATASET.NUM_CLASSES", "3", "DATASET.SELECTION_IMAGE_SIZE", "False", "DATASET.IMAGE_SIZE",
        "32", "DATASET.BATCH_SIZE", "2", "DATASET.VAL_BATCH_MUL", "2", "LOG_INTERVAL", "1"])


def _global_batch():
    rng = np.random.RandomState(0)
    images = rng.standard_normal((GLOBAL_BATCH, 3, 32, 32)).astype("float32")
    labels = rng.randint(0, 3, size=GLOBAL_BATCH).astype("int64")
    return images, labels


def _gradients(model, images, labels):
    """Mean cross-entropy of ``images`` in eval mode (running BN statistics, no dropout), so a
    rank's half-batch loss averaged over ranks is exactly the global batch's loss."""
    model.eval()
    logits = model(paddle.to_tensor(images))
    loss = paddle.nn.functional.cross_entropy(logits, paddle.to_tensor(labels))
    loss.backward()
    from lib.engine.common import unwrap_model

    return {name: p.grad.numpy() for name, p in unwrap_model(model).named_parameters()
            if not p.stop_gradient}


def _worker(out_dir, data_dir):
    from lib.engine.common import (broadcast_buffers, build_loaders, finish_run, prepare_run,
                                   unwrap_model, wrap_model)
    from lib.engine.child import child_loader_policy, create_child_model, resolve_child
    from lib.engine.evaluate import evaluate

    ctx = prepare_run(_config(data_dir, os.path.join(out_dir, "runs")), "retrain")
    model = create_child_model(ctx.cfg, resolve_child(ctx.cfg))
    wrapped = wrap_model(model, ctx)
    images, labels = _global_batch()
    share = GLOBAL_BATCH // ctx.world_size
    mine = slice(ctx.rank * share, (ctx.rank + 1) * share)
    grads = _gradients(wrapped, images[mine], labels[mine])
    _, val_loader = build_loaders(ctx.cfg, ctx, 32, policy=child_loader_policy(ctx.cfg), train=False)
    metrics = evaluate(unwrap_model(wrapped), val_loader, ctx)
    metrics.pop("seconds")
    # training-mode forwards on different data make the ranks' BN statistics differ, until
    # broadcast_buffers hands out rank 0's
    wrapped.train()
    with paddle.no_grad():
        wrapped(paddle.to_tensor(images[mine]))
    running_mean = unwrap_model(wrapped).bn1._mean
    bn_before = running_mean.numpy().tolist()
    broadcast_buffers(wrapped, ctx)
    bn_after = running_mean.numpy().tolist()
    with open(os.path.join(out_dir, f"rank{ctx.rank}.json"), "w") as f:
        json.dump({"metrics": metrics, "run_dir": ctx.run_dir, "world_size": ctx.world_size,
                   "shard": len(val_loader.batch_sampler.shard_indices()),
                   "bn_before": bn_before, "bn_after": bn_after}, f)
    np.savez(os.path.join(out_dir, f"grads{ctx.rank}.npz"), **grads)
    finish_run(ctx)


def test_two_gloo_ranks_match_one_process(tmp_path, demo_data_factory):
    from pimm.utils import seed_everything
    from lib.engine.common import RunContext, build_loaders
    from lib.engine.child import child_loader_policy, create_child_model, resolve_child
    from lib.engine.evaluate import evaluate

    data_dir = demo_data_factory(num_classes=3, train_per_class=2, val_per_class=3, image_size=32)
    env = dict(os.environ, GLOG_minloglevel="2")
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    env["PYTHONPATH"] = os.pathsep.join([repo, env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "paddle.distributed.launch", "--log_level", "WARNING",
         "--nproc_per_node", "2", "--log_dir", str(tmp_path / "log"), os.path.abspath(__file__),
         str(tmp_path), data_dir],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    logs = "".join(open(tmp_path / "log" / f"workerlog.{r}").read()[-2000:] for r in (0, 1)
                   if os.path.exists(tmp_path / "log" / f"workerlog.{r}"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:] + logs

    ranks = [json.load(open(tmp_path / f"rank{r}.json")) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["run_dir"] == ranks[1]["run_dir"] == str(tmp_path / "runs" / "dist")
    assert [r["shard"] for r in ranks] == [5, 5]  # 9 images: rank 1's fifth one is a duplicate
    assert ranks[0]["metrics"] == ranks[1]["metrics"]
    assert ranks[0]["bn_before"] != ranks[1]["bn_before"]
    assert ranks[0]["bn_after"] == ranks[1]["bn_after"] == ranks[0]["bn_before"]

    # one process, same seed, same model, the whole global batch and the whole validation set
    cfg = _config(data_dir, tmp_path / "single")
    seed_everything(cfg.SEED)  # what prepare_run does on every rank
    model = create_child_model(cfg, resolve_child(cfg))
    images, labels = _global_batch()
    expected = _gradients(model, images, labels)
    for rank in (0, 1):
        got = np.load(tmp_path / f"grads{rank}.npz")
        assert sorted(got.files) == sorted(expected)
        for name, grad in expected.items():
            np.testing.assert_allclose(got[name], grad, rtol=1e-4, atol=1e-7, err_msg=name)

    ctx = RunContext(cfg=cfg, mode="retrain", run_dir=str(tmp_path), logger=logging.getLogger("t"),
                     writer=None, rank=0, world_size=1, distributed=False)  # for evaluate's logging
    _, val_loader = build_loaders(cfg, None, 32, policy=child_loader_policy(cfg), train=False)
    single = evaluate(model, val_loader, ctx)
    distributed = ranks[0]["metrics"]
    assert distributed["images"] == single["images"] == 9
    for key in ("prec1", "prec5"):
        assert distributed[key] == single[key]
    assert distributed["loss"] == pytest.approx(single["loss"], rel=1e-5)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
