"""tools/make_subimagenet.py: the shipped lists, and the tool on a fabricated tree."""
import os
import sys

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))

import make_subimagenet  # noqa: E402

from pimm.data import read_subset_lists  # noqa: E402


def test_shipped_lists_are_creams_subimagenet():
    subset = read_subset_lists(os.path.join(REPO, "data", "subclass_list.txt"),
                               os.path.join(REPO, "data", "subimages_list.txt"))
    assert len(subset) == 100 and {len(names) for _, names in subset} == {350}
    assert subset[0][0] == "n01440764" and subset[-1][0] == "n01855672"
    assert [c for c, _ in subset] == sorted(c for c, _ in subset)
    assert all(name.startswith(cls + "_") for cls, names in subset for name in names)


def test_tool_makes_the_subset_and_reports_missing_files(tmp_path, capsys):
    source = tmp_path / "imagenet"
    for split, name in (("train", "n9_1.JPEG"), ("train", "n9_2.JPEG"), ("val", "v_1.JPEG")):
        os.makedirs(source / split / "n9", exist_ok=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(source / split / "n9" / name)
    (tmp_path / "c.txt").write_text("n9\n")
    (tmp_path / "i.txt").write_text("['n9_2.JPEG']\n")
    lists = ["--classes", str(tmp_path / "c.txt"), "--images", str(tmp_path / "i.txt")]
    assert make_subimagenet.main([str(source), str(tmp_path / "sub"), *lists]) == 0
    out = capsys.readouterr().out
    assert "1 classes, 1 train + 1 val images" in out and "DATASET.NUM_CLASSES 1" in out
    assert os.path.islink(tmp_path / "sub" / "train" / "n9" / "n9_2.JPEG")
    (tmp_path / "i.txt").write_text("['n9_2.JPEG', 'n9_3.JPEG', 'n9_4.JPEG']\n")
    assert make_subimagenet.main([str(source), str(tmp_path / "sub2"), *lists]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 2 of the 4 listed files and folders are missing") and "n9_3.JPEG" in err
