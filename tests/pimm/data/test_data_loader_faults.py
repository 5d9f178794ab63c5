"""The loader with damaged inputs: unreadable images are skipped, warned about once and counted,
within a limit; other errors show where they happened; workers never outlive their parent."""
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from pimm.data import ImageDataset, UnreadableImagesError, create_loader


@pytest.fixture(scope="module")
def damaged_dir(demo_data_dir, tmp_path_factory):
    """The demo tree (12 train images per class) plus a truncated JPEG at the end of class
    00_circle and a text file named .JPEG at the end of 02_triangle: train images 12 and 37."""
    root = tmp_path_factory.mktemp("damaged")
    shutil.copytree(demo_data_dir, root, dirs_exist_ok=True)
    train = root / "train"
    good = sorted((train / "00_circle").iterdir())[0].read_bytes()
    (train / "00_circle" / "zz_truncated.JPEG").write_bytes(good[:len(good) // 3])
    (train / "02_triangle" / "zz_notes.JPEG").write_text("not an image\n")
    return str(root)


def _loader(root, workers, **kw):
    kw.setdefault("max_bad_fraction", 0.25)
    return create_loader(ImageDataset(os.path.join(root, "train")), (3, 32, 32), 10,
                         num_workers=workers, seed=3, **kw)


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_images_are_skipped_warned_once_and_counted(damaged_dir, workers, caplog):
    loader = _loader(damaged_dir, workers)  # 50 images in order, 5 batches of 10
    with caplog.at_level(logging.WARNING, logger="pimm.data.loader"):
        for _ in range(2):  # two epochs
            labels = np.concatenate([y.numpy() for _, y in loader])
            assert loader.skipped_in_epoch == 2
    assert len(labels) == 48  # both left out of the evaluation-style batches
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2  # once per file, not once per epoch
    assert any("zz_truncated.JPEG" in w for w in warnings)
    assert any("zz_notes.JPEG" in w and "cannot decode image" in w for w in warnings)


def test_training_batches_keep_their_size(damaged_dir):
    loader = _loader(damaged_dir, 0, is_training=True)
    sizes = [len(y) for _, y in loader]
    assert sizes == [10] * 5 and loader.skipped_in_epoch == 2 and loader.batch_skipped == []


def test_evaluation_batches_report_the_positions_left_out(damaged_dir):
    loader = _loader(damaged_dir, 0)
    assert [i for i, (path, _) in enumerate(loader.dataset.samples) if "zz_" in path] == [12, 37]
    seen = []
    for batch_idx, (_, labels) in enumerate(loader):
        seen += [batch_idx * 10 + p for p in loader.batch_skipped]
        assert len(labels) == 10 - len(loader.batch_skipped)
    assert seen == [12, 37]


def test_more_than_the_allowed_share_stops_with_the_setting_named(damaged_dir):
    # batches of 10 hold one bad image each (always allowed), but 2 of 50 is more than 3.9 %
    per_epoch = _loader(damaged_dir, 0, max_bad_fraction=0.039, bad_images_setting="DATA.LIMIT")
    with pytest.raises(UnreadableImagesError, match=r"2 of the 50 images of an epoch could not be "
                       r"read \(the latest: .*zz_notes.JPEG\), more than DATA.LIMIT = 0.039 allows"):
        list(per_epoch)
    # one batch of 50 with both: more than 2 % of it
    per_batch = create_loader(ImageDataset(os.path.join(damaged_dir, "train")), (3, 32, 32), 50,
                              num_workers=0, max_bad_fraction=0.02)
    with pytest.raises(UnreadableImagesError, match=r"2 of the 50 images of a batch .*truncated"):
        list(per_batch)
    strict = _loader(damaged_dir, 0, max_bad_fraction=0.0)
    with pytest.raises(UnreadableImagesError, match="1 of the 10 images of a batch"):
        list(strict)


def test_other_errors_are_raised_with_the_workers_traceback(damaged_dir):
    class Broken(ImageDataset):
        def __getitem__(self, index):
            if index == 7:
                raise ZeroDivisionError("a bug in a transform")
            return super().__getitem__(index)

    loader = create_loader(Broken(os.path.join(damaged_dir, "val")), (3, 32, 32), 4,
                           num_workers=0)
    with pytest.raises(RuntimeError, match=r"(?s)loading .*failed:.*ZeroDivisionError: a bug in"):
        list(loader)


_HOLDER = textwrap.dedent("""
    import os, sys, time
    from pimm.data import ImageDataset, create_loader

    class Stuck(ImageDataset):  # a worker blocked for good, as on a full queue or a dead disk
        def __getitem__(self, index):
            if index >= 4:
                time.sleep(3600)
            return super().__getitem__(index)

    loader = create_loader(Stuck(sys.argv[1]), (3, 32, 32), 2, num_workers=2)
    batches = iter(loader)
    next(batches)
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
        print(f.read().strip(), flush=True)
    time.sleep(3600)
""")


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.e2e  # a fresh interpreter with loader workers
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_killed_parent(demo_data_dir):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    env = dict(os.environ, PYTHONPATH=os.path.abspath(repo), GLOG_minloglevel="2")
    parent = subprocess.Popen([sys.executable, "-c", _HOLDER, os.path.join(demo_data_dir, "val")],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 60  # the kernel kills them at once; this only bounds the wait
        while any(_alive(pid) for pid in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers)
    finally:
        parent.kill()
