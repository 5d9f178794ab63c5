"""Save with CheckpointSaver, resume in a FRESH process, and continue bit-identically.

The model trains one randomly sampled branch per step (as Cream's supernet does); branch 2 is
first sampled after the resume point, the case Paddle's lazily created optimizer state cannot
resume. Optimizer, scheduler (with noise), EMA and the RNG streams all come from the checkpoint.
"""
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
from paddle.utils import unique_name
from yacs.config import CfgNode

from pimm.optim import create_optimizer, load_optimizer_state
from pimm.scheduler import create_scheduler
from pimm.utils import (CheckpointSaver, ModelEma, get_rng_state, seed_everything,
                        set_num_threads, set_rng_state)

EPOCHS, RESUME_AFTER, STEPS = 4, 1, 3
OPTIMIZERS = ("rmsproptf", "sgd")


class BranchyNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.stem = paddle.nn.Linear(4, 8)
        self.bn = paddle.nn.BatchNorm1D(8)
        self.branches = paddle.nn.LayerList([paddle.nn.Linear(8, 2) for _ in range(3)])

    def forward(self, x, branch):
        return self.branches[branch](paddle.nn.functional.relu(self.bn(self.stem(x))))


def config(opt):
    return CfgNode(dict(OPT=opt, LR=0.05, WEIGHT_DECAY=1e-3, MOMENTUM=0.9, OPT_EPS=1e-3,
                        SCHED="step", EPOCHS=EPOCHS, DECAY_EPOCHS=1.5, DECAY_RATE=0.5,
                        WARMUP_LR=1e-3, WARMUP_EPOCHS=1, LR_NOISE=[0.0, 1.0], SEED=3))


def build(opt):
    with unique_name.guard():
        model = BranchyNet()
    cfg = config(opt)
    optimizer = create_optimizer(cfg, model)
    scheduler, _ = create_scheduler(cfg, optimizer)
    return cfg, model, optimizer, scheduler


def train_epochs(model, optimizer, scheduler, ema, first, last, saver=None):
    model.train()
    for epoch in range(first, last):
        for _ in range(STEPS):
            branch = int(np.random.randint(2 if epoch <= RESUME_AFTER else 3))
            x = paddle.randn([6, 4])
            loss = (model(x, branch) ** 2).mean()
            loss.backward()
            optimizer.step()
            optimizer.clear_grad(set_to_zero=False)
            ema.update(model)
        scheduler.step(epoch + 1)
        if saver is not None:
            saver.save_checkpoint(epoch, metric=-float(loss),
                                  extra_state={"rng_state": get_rng_state()})


def snapshot(model, optimizer, ema):
    out = {f"model/{k}": v.numpy() for k, v in model.state_dict().items()}
    out.update({f"ema/{k}": v.numpy() for k, v in ema.state_dict().items()})
    out.update({f"opt/{k}": v.numpy() for k, v in optimizer.state_dict().items()})
    out["lr"] = np.array(optimizer.get_lr())
    out["next_draw"] = paddle.rand([4]).numpy()
    return out


def resume_and_finish(ckpt_dir, opt_name, out_file):
    """Everything a training engine does on resume, in a process that never saw the run."""
    cfg, model, optimizer, scheduler = build(opt_name)
    checkpoint = paddle.load(os.path.join(ckpt_dir, f"checkpoint-{RESUME_AFTER}.pdparams"))
    model.set_state_dict(checkpoint["state_dict"])
    load_optimizer_state(optimizer, checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    ema = ModelEma(model, decay=0.9, resume=checkpoint)
    set_rng_state(checkpoint["rng_state"])
    train_epochs(model, optimizer, scheduler, ema, checkpoint["epoch"] + 1, EPOCHS)
    np.savez(out_file, **snapshot(model, optimizer, ema))


@pytest.mark.e2e  # resumes in a fresh Python process
def test_resume_in_fresh_process_continues_identically(tmp_path):
    set_num_threads(1)  # bit-exact comparison needs the same thread count in both processes
    expected = {}
    for opt_name in OPTIMIZERS:
        seed_everything(0)
        cfg, model, optimizer, scheduler = build(opt_name)
        ema = ModelEma(model, decay=0.9)
        saver = CheckpointSaver(model, optimizer, args=cfg, model_ema=ema,
                                checkpoint_dir=str(tmp_path / opt_name), scheduler=scheduler)
        train_epochs(model, optimizer, scheduler, ema, 0, EPOCHS, saver)
        expected[opt_name] = snapshot(model, optimizer, ema)

    script = os.path.abspath(__file__)
    repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(script))))
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOG_minloglevel="2", PYTHONPATH=repo_root)
    for opt_name in OPTIMIZERS:
        out_file = str(tmp_path / f"{opt_name}.npz")
        proc = subprocess.run(
            [sys.executable, script, str(tmp_path / opt_name), opt_name, out_file],
            env=env, cwd=repo_root, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        resumed = np.load(out_file)
        assert sorted(resumed.files) == sorted(expected[opt_name])
        assert any(k.startswith("opt/") for k in resumed.files)
        for key, value in expected[opt_name].items():
            np.testing.assert_array_equal(resumed[key], value, err_msg=f"{opt_name}: {key}")


if __name__ == "__main__":
    set_num_threads(1)
    resume_and_finish(*sys.argv[1:4])
