"""Cream of the Crop, SPOS and P-DARTS: search (train; evolve), retrain a child network, test a
checkpoint, or measure how well a supernet ranks paths (correlation).

    python tools/main.py train   experiments/configs/train/train.yaml
    python tools/main.py retrain experiments/configs/retrain/14.yaml DATA_DIR ./data/imagenet
    python tools/main.py test    experiments/configs/test/test.yaml NET.SELECTION 14 \\
        RESUME_PATH ./experiments/workspace/ckps/14.pth.tar
    python tools/main.py evolve  experiments/configs/spos/evolve.yaml SPOS.SUPERNET supernet.pdparams
    python tools/main.py correlation experiments/configs/correlation/subimagenet.yaml \\
        CORRELATION.CHECKPOINT ./experiments/workspace/train/subimagenet/last.pdparams

The config's METHOD ('cream', 'spos' or 'pdarts') picks the engine of the mode (lib.engine.ENGINES).

KEY VALUE pairs after the config override its entries (yacs syntax, e.g. DATASET.BATCH_SIZE 64).
Several processes (--nproc N, or NUM_GPU N on a machine with at least N GPUs) run through
``python -m paddle.distributed.launch``; --nnodes/--master/--ips/--rank pass through for
multi-node jobs. Without GPUs one process runs unless --nproc asks for more (CPU ranks over gloo).
"""
from __future__ import annotations

import _entry  # first: the repository root on sys.path, quiet Paddle  # isort: skip

import argparse
import os
import signal
import subprocess
import sys
from typing import List, Optional

from lib.config import ConfigError, load_config
from lib.engine import MODES, engine_for
from pimm.data import UnreadableImagesError
from pimm.utils import NonFiniteStateError

_LAUNCHER_ENV = "PADDLE_TRAINERS_NUM"  # set by paddle.distributed.launch in every process it starts


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python tools/main.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=MODES,
                        help="train (search / supernet training), evolve (SPOS's evolutionary search), "
                             "retrain, test or correlation")
    parser.add_argument("cfg", help="YAML config, e.g. experiments/configs/retrain/14.yaml")
    parser.add_argument("overrides", nargs="*", metavar="KEY VALUE",
                        help="config overrides, e.g. NET.SELECTION 43 DATASET.BATCH_SIZE 64")
    launch = parser.add_argument_group("processes (passed to paddle.distributed.launch)")
    launch.add_argument("--nproc", type=int, default=None,
                        help="processes on this machine (default: NUM_GPU when that many GPUs are "
                             "visible, else 1)")
    launch.add_argument("--nnodes", default=None, help="number of machines, e.g. 2")
    launch.add_argument("--master", default=None, help="rendezvous ip:port of the first machine")
    launch.add_argument("--ips", default=None,
                        help="comma-separated machine ips (instead of --master)")
    launch.add_argument("--rank", default=None, help="this machine's rank among the nodes")
    launch.add_argument("--devices", default=None,
                        help="GPU ids to use on this machine, e.g. 0,1,2,3")
    launch.add_argument("--log-dir", default=None,
                        help="per-process logs of the launcher "
                             "(default SAVE_PATH/launch_logs/MODEL)")
    return parser.parse_intermixed_args(argv)


def _visible_gpus() -> int:
    import paddle

    return paddle.device.cuda.device_count() if paddle.is_compiled_with_cuda() else 0


def processes_per_node(args: argparse.Namespace, cfg) -> int:
    """--nproc when given; else NUM_GPU on a machine with GPUs, 1 without."""
    if args.nproc is not None:
        if args.nproc < 1:
            raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
        return args.nproc
    wanted, gpus = int(cfg.NUM_GPU), _visible_gpus()
    if gpus == 0:
        return 1
    if wanted > gpus:
        raise ConfigError(f"NUM_GPU is {wanted} but {gpus} GPU(s) are visible: set NUM_GPU {gpus} "
                          "(the global batch is NUM_GPU x DATASET.BATCH_SIZE) or use --nproc")
    return max(1, wanted)


def preflight(cfg, mode: str) -> None:
    """Checks that would otherwise fail in every launched process, a few seconds later."""
    engine_for(mode, str(cfg.METHOD)).preflight(cfg)


def launch_command(args: argparse.Namespace, cfg, nproc: int) -> List[str]:
    log_dir = args.log_dir or os.path.join(str(cfg.SAVE_PATH), "launch_logs", str(cfg.MODEL))
    command = [sys.executable, "-m", "paddle.distributed.launch", "--log_level", "WARNING",
               "--nproc_per_node", str(nproc), "--log_dir", log_dir]
    for flag in ("nnodes", "master", "ips", "rank", "devices"):
        value = getattr(args, flag)
        if value is not None:
            command += [f"--{flag}", str(value)]
    return command + [os.path.abspath(__file__), args.mode, args.cfg, *args.overrides]


def run_launcher(command: List[str]) -> int:
    """Run the launcher and wait for it, also while it stops its processes: a SIGTERM sent to
    this process only is passed on to it (Ctrl-C reaches the whole process group by itself)."""
    launcher = subprocess.Popen(command)
    try:
        return launcher.wait()
    except KeyboardInterrupt as stop:
        if isinstance(stop, _entry.Terminated):
            launcher.send_signal(signal.SIGTERM)
        launcher.wait()
        raise


def run_engine(cfg, mode: str) -> dict:
    from lib.engine.common import finish_run, prepare_run

    engine = engine_for(mode, str(cfg.METHOD))
    ctx = prepare_run(cfg, mode)
    try:
        return engine.run(ctx)
    finally:
        finish_run(ctx)


@_entry.entry_point(UnreadableImagesError, NonFiniteStateError)
def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        _entry.stop_on_signals()
        cfg = load_config(args.cfg, args.overrides)
        launched = _LAUNCHER_ENV in os.environ
        if not launched:
            nproc = processes_per_node(args, cfg)
            multi_node = args.nnodes is not None and str(args.nnodes) not in ("1", "")
            if nproc > 1 or multi_node:
                preflight(cfg, args.mode)
                return run_launcher(launch_command(args, cfg, nproc))
        run_engine(cfg, args.mode)
    except BaseException as stop:
        signum = _entry.stopped_by(stop)
        if signum is None:
            raise
        print(f"{'stopped by SIGTERM' if signum == signal.SIGTERM else 'interrupted'}; with "
              "AUTO_RESUME True the same command continues the run", file=sys.stderr)
        return 128 + signum
    return 0


if __name__ == "__main__":
    sys.exit(main())
