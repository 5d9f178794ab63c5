"""Two machines, played on this one: two ``tools/main.py --nnodes 2 --master 127.0.0.1:<port>
--rank 0/1`` commands, one CPU process each over gloo, as README's two-node launch. Both nodes
train the same model (rank 0 compares the ranks' weights every epoch) and only rank 0 writes: node
1's SAVE_PATH is never created, node 0's run folder holds one run's files."""
import csv
import os
import re
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e  # four launcher and worker processes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAIN = os.path.join(REPO, "tools", "main.py")
RETRAIN_14 = os.path.join(REPO, "experiments", "configs", "retrain", "14.yaml")
DEMO = os.path.join(REPO, "experiments", "configs", "train", "demo.yaml")
COMMON = ["DATASET.NUM_CLASSES", 4, "DATASET.IMAGE_SIZE", 32, "WORKERS", 0, "NUM_GPU", 1,
          "LOG_INTERVAL", 1, "MODEL", "two_nodes"]
MODES = {
    # 48 images over two ranks: 3 steps of 8 images per rank and epoch
    "retrain": (RETRAIN_14, ["DATASET.SELECTION_IMAGE_SIZE", False, "DATASET.BATCH_SIZE", 8,
                             "EPOCHS", 2, "WARMUP_EPOCHS", 0, "LR", 0.01]),
    # 6 steps of 4 images per rank, board and meta updates from the first step on
    "train": (DEMO, ["DATASET.BATCH_SIZE", 4, "EPOCHS", 1, "SUPERNET.FLOPS_MAXIMUM", 115,
                     "SUPERNET.SLICE", 2, "SUPERNET.POOL_SIZE", 3, "SUPERNET.UPDATE_ITER", 2,
                     "SUPERNET.META_STA_EPOCH", -1, "SUPERNET.VAL_PATHS", 2, "LR", 0.02]),
}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_two_nodes_train_one_model_and_only_rank_0_writes(tmp_path, demo_data_dir, mode):
    config, overrides = MODES[mode]
    master = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, GLOG_minloglevel="2")
    nodes = []
    for rank in (0, 1):  # each "machine" has its own working folder, SAVE_PATH and launcher logs
        node = tmp_path / f"node{rank}"
        node.mkdir()
        command = [sys.executable, MAIN, mode, config, *map(str, COMMON + overrides),
                   "DATA_DIR", demo_data_dir, "SAVE_PATH", str(node / "runs"),
                   "--nnodes", "2", "--master", master, "--rank", str(rank),
                   "--log-dir", str(node / "logs")]
        nodes.append(subprocess.Popen(command, cwd=node, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [node.communicate(timeout=900)[0] for node in nodes]
    worker_logs = [(tmp_path / f"node{r}" / "logs" / "workerlog.0").read_text() for r in (0, 1)]
    for node, output, log in zip(nodes, outputs, worker_logs):
        assert node.returncode == 0, output[-3000:] + log[-3000:]

    assert not (tmp_path / "node1" / "runs").exists()  # rank 1 wrote nothing of its own
    run_dir = tmp_path / "node0" / "runs" / "two_nodes"
    with open(run_dir / f"{mode}.log") as f:
        log = f.read()
    assert f"{mode} run in {run_dir}: 2 process(es)" in log
    epochs = [str(e) for e in range(int(overrides[overrides.index("EPOCHS") + 1]))]
    same = re.findall(r"epoch (\d+): the same weights on all 2 ranks \(digest [0-9a-f]+\)", log)
    assert same == epochs and "differ from rank 0's" not in log
    with open(run_dir / "summary.csv", newline="") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == epochs  # one writer, one row each
    assert len(os.listdir(run_dir / "runs")) == 1  # one TensorBoard events file
    assert {"config.yaml", "last.pdparams", "model_best.pdparams", "run.lock"} <= set(
        os.listdir(run_dir))
