"""Class and image subsets of an ImageNet-style tree (pimm.data.subset), on a fabricated mini tree."""
import filecmp
import json
import os

import numpy as np
import pytest
from PIL import Image

from pimm.data import SUBSET_MANIFEST, ImageDataset, SubsetError, make_image_subset, read_subset_lists

CLASSES = ("n001", "n002", "n003")


def _jpeg(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path, quality=90)


@pytest.fixture
def tree(tmp_path):
    """SOURCE/train/<class>/<class>_<i>.JPEG (4 each), SOURCE/val/<class>/val_<class>_<i>.JPEG (2
    each), and lists naming 2 training images of the first two classes."""
    source = tmp_path / "imagenet"
    for c, cls in enumerate(CLASSES):
        for i in range(4):
            _jpeg(str(source / "train" / cls / f"{cls}_{i}.JPEG"), 10 * c + i)
        for i in range(2):
            _jpeg(str(source / "val" / cls / f"val_{cls}_{i}.JPEG"), 100 + 10 * c + i)
    (tmp_path / "classes.txt").write_text("n001\nn002\n")
    (tmp_path / "images.txt").write_text("['n001_0.JPEG', 'n001_2.JPEG']\n['n002_1.JPEG', 'n002_3.JPEG']\n")
    subset = read_subset_lists(str(tmp_path / "classes.txt"), str(tmp_path / "images.txt"))
    return source, tmp_path / "sub", subset


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, _, names in os.walk(root) for n in names)


def test_links_hold_the_listed_training_images_and_all_validation_images(tree):
    source, out, subset = tree
    assert subset == [("n001", ["n001_0.JPEG", "n001_2.JPEG"]), ("n002", ["n002_1.JPEG", "n002_3.JPEG"])]
    summary = make_image_subset(str(source), str(out), subset)
    assert (summary.classes, summary.train, summary.val, summary.written) == (2, 4, 4, 8)
    assert _files(out) == sorted([SUBSET_MANIFEST] + [os.path.join("train", c, n) for c, names in subset
                                                      for n in names]
                                 + [os.path.join("val", c, f"val_{c}_{i}.JPEG") for c in ("n001", "n002")
                                    for i in range(2)])
    link = out / "train" / "n002" / "n002_3.JPEG"
    assert os.path.islink(link) and os.readlink(link) == str(source / "train" / "n002" / "n002_3.JPEG")
    train = ImageDataset(str(out / "train"))
    assert train.classes == ["n001", "n002"] and len(train) == 4
    image, label = train[3]
    assert label == 1 and np.asarray(image).mean() == pytest.approx(13, abs=2)  # n002_3: value 13
    manifest = json.loads((out / SUBSET_MANIFEST).read_text())
    assert manifest["mode"] == "link" and manifest["num_files"] == {"train": 4, "val": 4}
    # complete: nothing more to do
    assert make_image_subset(str(source), str(out), subset).written == 0


def test_a_partial_tree_is_completed_and_links_become_copies(tree):
    source, out, subset = tree
    make_image_subset(str(source), str(out), subset)
    os.remove(out / "train" / "n001" / "n001_2.JPEG")  # as if interrupted before this file
    (out / "val" / "n002" / ".val_n002_0.JPEG.partial").write_bytes(b"half")  # and while writing one
    os.remove(out / "val" / "n002" / "val_n002_0.JPEG")
    os.remove(out / "train" / "n002" / "n002_1.JPEG")  # a link to the wrong image
    os.symlink(str(source / "train" / "n002" / "n002_0.JPEG"), out / "train" / "n002" / "n002_1.JPEG")
    assert make_image_subset(str(source), str(out), subset).written == 3
    assert not os.path.exists(out / "val" / "n002" / ".val_n002_0.JPEG.partial")
    assert os.readlink(out / "train" / "n002" / "n002_1.JPEG") == str(source / "train" / "n002" / "n002_1.JPEG")
    summary = make_image_subset(str(source), str(out), subset, copy=True)
    assert summary.written == 8
    copied = out / "train" / "n001" / "n001_2.JPEG"
    assert not os.path.islink(copied) and filecmp.cmp(copied, source / "train" / "n001" / "n001_2.JPEG",
                                                      shallow=False)
    assert json.loads((out / SUBSET_MANIFEST).read_text())["mode"] == "copy"


def test_missing_source_files_are_counted_and_named_before_anything_is_written(tree):
    source, out, subset = tree
    os.remove(source / "train" / "n002" / "n002_3.JPEG")
    os.rename(source / "val" / "n001", source / "val" / "moved")
    with pytest.raises(SubsetError, match=r"2 of the 6 listed files and folders are missing") as err:
        make_image_subset(str(source), str(out), subset)
    assert "n002_3.JPEG" in str(err.value) and os.path.join("val", "n001") in str(err.value)
    assert not out.exists()
    # without validation images the missing val folder does not matter
    with pytest.raises(SubsetError, match=r"1 of the 4 listed"):
        make_image_subset(str(source), str(out), subset, val=False)
    with pytest.raises(SubsetError, match="no train/ folder"):
        make_image_subset(str(source / "train"), str(out), subset)


def test_a_folder_holding_other_images_is_refused(tree):
    source, out, subset = tree
    _jpeg(str(out / "train" / "n003" / "n003_0.JPEG"), 0)
    with pytest.raises(SubsetError, match=r"1 files or folders this subset does not list \(e\.g\. train/n003\)"):
        make_image_subset(str(source), str(out), subset)


@pytest.mark.parametrize("images, message", [
    ("['n001_0.JPEG']\n", "match line by line"),
    ("['n001_0.JPEG']\n__import__('os').system('true')\n", "line 2: expected a list"),
    ("['n001_0.JPEG']\n['../n001/n001_1.JPEG']\n", "not a plain file"),
])
def test_bad_lists_are_refused(tmp_path, images, message):
    (tmp_path / "classes.txt").write_text("n001\nn002\n")
    (tmp_path / "images.txt").write_text(images)
    with pytest.raises(SubsetError, match=message):
        read_subset_lists(str(tmp_path / "classes.txt"), str(tmp_path / "images.txt"))
