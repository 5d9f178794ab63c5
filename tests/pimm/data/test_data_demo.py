import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

from pimm.data import ImageDataset, make_demo_dataset
from pimm.data.demo import MANIFEST_NAME, demo_class_names

SMALL = dict(num_classes=3, train_per_class=4, val_per_class=2, image_size=32)


def _file_hashes(root):
    hashes = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                hashes[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return hashes


def test_layout_of_the_shared_fixture(demo_data_dir):
    with open(os.path.join(demo_data_dir, MANIFEST_NAME)) as f:
        manifest = json.load(f)
    assert manifest["classes"] == ["00_circle", "01_square", "02_triangle", "03_stripes"]
    assert manifest["num_files"] == {"train": 48, "val": 16}
    for split, per_class in (("train", 12), ("val", 4)):
        for cls in manifest["classes"]:
            files = sorted(os.listdir(os.path.join(demo_data_dir, split, cls)))
            kind = cls.split("_", 1)[1]
            assert files == [f"{kind}_{i:05d}.JPEG" for i in range(per_class)]
    with Image.open(os.path.join(demo_data_dir, "val", "01_square", "square_00000.JPEG")) as img:
        assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (48, 48))
    assert sorted(os.listdir(demo_data_dir)) == [MANIFEST_NAME, "train", "val"]


def test_same_seed_gives_identical_bytes_other_seed_differs(tmp_path):
    a = make_demo_dataset(str(tmp_path / "a"), seed=3, **SMALL)
    b = make_demo_dataset(str(tmp_path / "b"), seed=3, **SMALL)
    c = make_demo_dataset(str(tmp_path / "c"), seed=4, **SMALL)
    ha, hb, hc = _file_hashes(a), _file_hashes(b), _file_hashes(c)
    assert ha == hb and len(ha) == 3 * 6 + 1
    assert set(ha) == set(hc) and all(ha[k] != hc[k] for k in ha if k.endswith(".JPEG"))
    # Train and val images are distinct draws, and no two images of a class repeat.
    assert len({v for k, v in ha.items() if k.endswith(".JPEG")}) == 18


def test_rerun_is_a_no_op_and_conflicts_raise(tmp_path):
    root = make_demo_dataset(str(tmp_path / "d"), **SMALL)
    manifest = os.path.join(root, MANIFEST_NAME)
    stamp = os.stat(manifest).st_mtime_ns
    one_image = os.path.join(root, "train", "00_circle", "circle_00000.JPEG")
    image_stamp = os.stat(one_image).st_mtime_ns
    assert make_demo_dataset(root, **SMALL) == root
    assert os.stat(manifest).st_mtime_ns == stamp and os.stat(one_image).st_mtime_ns == image_stamp
    with pytest.raises(FileExistsError, match="choose another folder or delete it"):
        make_demo_dataset(root, **dict(SMALL, seed=1))
    with open(manifest) as f:  # the same parameters, written by an earlier generator
        record = json.load(f)
    with open(manifest, "w") as f:
        json.dump(dict(record, version=record["version"] - 1), f)
    with pytest.raises(FileExistsError, match="older demo generator .*delete it and run the command again"):
        make_demo_dataset(root, **SMALL)
    os.remove(manifest)
    with pytest.raises(FileExistsError, match="has no demo_manifest.json"):
        make_demo_dataset(root, **SMALL)


def test_interrupted_staging_is_replaced(tmp_path):
    staging = tmp_path / "e" / ".demo-staging" / "train" / "junk"
    staging.mkdir(parents=True)
    root = make_demo_dataset(str(tmp_path / "e"), **SMALL)
    assert not os.path.exists(os.path.join(root, ".demo-staging"))
    assert len(ImageDataset(os.path.join(root, "train"))) == 12


def test_class_colours_are_random_not_a_shortcut(demo_data_dir):
    # Colours vary widely inside every class, so colour alone does not give the label away.
    ds = ImageDataset(os.path.join(demo_data_dir, "train"))
    means = np.array([np.asarray(ds[i][0], dtype=np.float64).mean(axis=(0, 1)) for i in range(len(ds))])
    labels = np.array([label for _, label in ds.samples])
    spread = [means[labels == k].std(axis=0).mean() for k in range(4)]
    assert min(spread) > 20


def test_bad_arguments():
    with pytest.raises(ValueError, match="1 to 12 classes"):
        demo_class_names(13)
    with pytest.raises(ValueError, match="image_size must be >= 16"):
        make_demo_dataset("unused", image_size=8)


def test_cli_writes_and_reports(tmp_path, capsys, load_tool):
    cli = load_tool("make_demo_data")
    out = str(tmp_path / "cli")
    args = [out, "--classes", "2", "--train-per-class", "3", "--val-per-class", "1", "--size", "24"]
    assert cli.main(args) == 0
    assert "written: 2 classes, 6 train + 2 val JPEGs of 24px" in capsys.readouterr().out
    assert cli.main(args) == 0
    assert "already complete, nothing written" in capsys.readouterr().out
    assert cli.main([out, "--classes", "3"]) == 2
    assert "choose another folder" in capsys.readouterr().err
