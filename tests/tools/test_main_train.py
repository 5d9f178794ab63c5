"""``tools/main.py train`` (the search) as a user runs it, in two CPU processes over gloo."""
import csv
import json
import os

import pytest

pytestmark = pytest.mark.e2e  # runs tools/main.py with the launcher in other processes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(REPO, "experiments", "configs", "train", "demo.yaml")


def test_two_process_search_with_board_kd_and_meta_updates(tmp_path, demo_data_factory, run_main):
    data = demo_data_factory(num_classes=3, train_per_class=8, val_per_class=2, image_size=32)
    run_main("train", DEMO, "DATA_DIR", data, "SAVE_PATH", tmp_path, "MODEL", "two", "EPOCHS", 1,
             "WORKERS", 0, "LOG_INTERVAL", 1, "LR", 0.02, "DATASET.NUM_CLASSES", 3,
             "DATASET.IMAGE_SIZE", 32, "DATASET.BATCH_SIZE", 4, "SUPERNET.SLICE", 2,
             "SUPERNET.POOL_SIZE", 3, "SUPERNET.UPDATE_ITER", 1, "SUPERNET.META_STA_EPOCH", -1,
             "SUPERNET.VAL_PATHS", 1, "SUPERNET.FLOPS_MAXIMUM", 115, "SUPERNET.TEACHER_MIN_PREC1", 0.0,
             "--nproc", 2, cwd=tmp_path)
    run_dir = tmp_path / "two"
    with open(run_dir / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["0"]  # written once, by rank 0
    # 24 images over 2 processes in batches of 4: 3 steps, meta updates at steps 1 and 2
    assert int(float(rows[0]["train_kd_steps"])) >= 1
    assert int(float(rows[0]["train_meta_updates"])) >= 1
    with open(run_dir / "board.json") as f:
        board = json.load(f)
    assert board["paths"] and all(0 <= p["flops"] <= 115 for p in board["paths"])
    with open(run_dir / "train.log") as f:
        log = f.read()
    assert "2 process(es)" in log and "Train: 0 [   2/3]" in log
    assert "KD-Loss: -" in log  # the first step, before the board has a teacher
    assert os.path.isfile(tmp_path / "launch_logs" / "two" / "workerlog.1")
