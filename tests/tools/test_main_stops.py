"""tools/main.py stopped from outside: SIGTERM (what schedulers send) and kill -9 in the middle of
saving. A stopped run leaves nothing running, and the same command again ends with the run folder
an uninterrupted run leaves."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pimm.models import read_paddle_checkpoint

pytestmark = pytest.mark.e2e  # tools/main.py in subprocesses

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAIN = os.path.join(REPO, "tools", "main.py")
RETRAIN_14 = os.path.join(REPO, "experiments", "configs", "retrain", "14.yaml")
TINY = ["DATASET.NUM_CLASSES", 4, "DATASET.IMAGE_SIZE", 32, "DATASET.SELECTION_IMAGE_SIZE", False,
        "NUM_GPU", 1, "DATASET.BATCH_SIZE", 16, "LOG_INTERVAL", 1, "EPOCHS", 2,
        "WARMUP_EPOCHS", 0, "LR", 0.01, "MODEL", "run"]
# tools/main.py, killed with SIGKILL just before the N-th os.replace onto a file of a given name
_KILLED_AT = """
import os, runpy, signal, sys
target, nth, sys.argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]  # then MAIN and its args
real_replace, seen = os.replace, [0]

def replace(src, dst, *args, **kwargs):
    if os.path.basename(dst) == target:
        seen[0] += 1
        if seen[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *args, **kwargs)

os.replace = replace
sys.path.insert(0, os.path.dirname(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _env():
    return dict(os.environ, GLOG_minloglevel="2")


def _args(data, save, *overrides):
    return [str(a) for a in ("retrain", RETRAIN_14, *TINY, "WORKERS", 0, "DATA_DIR", data,
                             "SAVE_PATH", save, *overrides)]


def _session_processes(session):
    """Pids of live processes in the session ``session`` (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(int(entry))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_like_ctrl_c_and_leaves_no_process(tmp_path, demo_data_dir):
    log = tmp_path / "run" / "retrain.log"
    run = subprocess.Popen([sys.executable, MAIN, *_args(demo_data_dir, tmp_path, "WORKERS", 2,
                                                         "EPOCHS", 100)],
                           cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 300  # bounds the wait for training to start, times nothing
        # training has started and its two loader workers are alive (they come and go with each
        # pass over the tiny demo set, so a single look can fall between two passes)
        while not (log.exists() and "Train: 0 [" in log.read_text()
                   and len(_session_processes(run.pid)) >= 3):
            assert run.poll() is None and time.time() < deadline, run.communicate()
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=300)
    finally:
        run.kill()
    assert run.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1] == ("stopped by SIGTERM; with AUTO_RESUME True the same "
                                            "command continues the run")
    assert "FatalError" not in out + err and "Traceback" not in err
    deadline = time.time() + 60
    while _session_processes(run.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert _session_processes(run.pid) == []


def _folder(run_dir):
    """What a run folder holds, comparable between runs: checkpoints (epoch, metric, weights),
    the index and the summary; logs and events differ between runs by nature."""
    state = {}
    for name in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, name)
        if name.endswith(".pdparams"):
            ckpt = read_paddle_checkpoint(path, return_numpy=True)
            state[name] = (ckpt["epoch"], ckpt["metric"], ckpt.get("batch_idx"),
                           ckpt["state_dict"]["classifier.weight"].tolist())
        elif name == "checkpoint_index.json":
            with open(path) as f:
                state[name] = json.load(f)
        elif name == "summary.csv":
            with open(path, newline="") as f:
                state[name] = [row["epoch"] for row in csv.DictReader(f)]
    return state


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, demo_data_dir, run_main):
    save = tmp_path_factory.mktemp("uninterrupted")
    run_main(*_args(demo_data_dir, save), cwd=save)
    return _folder(os.path.join(save, "run"))


def test_kill_9_while_saving_then_the_same_command(tmp_path, demo_data_dir, run_main,
                                                   uninterrupted):
    """Killed at the link that makes checkpoint-1 (the last epoch's): the run folder never had
    it again. tests/pimm/utils/test_checkpoint_saver_kills.py tries every other point."""
    target, nth = "checkpoint-1.pdparams", 1
    killed = subprocess.run([sys.executable, "-c", _KILLED_AT, target, str(nth), MAIN,
                             *_args(demo_data_dir, tmp_path)],
                            cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run_dir = tmp_path / "run"
    assert target not in os.listdir(run_dir)  # it was killed right there
    run_main(*_args(demo_data_dir, tmp_path), cwd=tmp_path)
    after = _folder(str(run_dir))
    assert sorted(after) == sorted(uninterrupted)
    for name, value in uninterrupted.items():
        if name.endswith(".pdparams"):
            assert after[name][:3] == value[:3], name
            np.testing.assert_array_equal(after[name][3], value[3], err_msg=name)
        else:
            assert after[name] == value, name
    assert not [n for n in os.listdir(run_dir) if n.endswith(".tmp")]
