import os

import numpy as np
import pytest
from PIL import Image

from pimm.data import Dataset, ImageDataset, ImageReadError


def _save(path, colour=(10, 20, 30), size=(6, 5), fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)


def test_demo_tree_classes_labels_and_items(demo_data_dir):
    ds = ImageDataset(os.path.join(demo_data_dir, "train"))
    assert ds.class_to_idx == {"00_circle": 0, "01_square": 1, "02_triangle": 2, "03_stripes": 3}
    assert ds.classes == ["00_circle", "01_square", "02_triangle", "03_stripes"]
    assert len(ds) == 48
    for path, label in ds.samples:
        assert os.path.basename(os.path.dirname(path)) == ds.classes[label]
    assert [label for _, label in ds.samples] == sorted(label for _, label in ds.samples)
    img, label = ds[13]
    assert (label, img.mode, img.size) == (1, "RGB", (48, 48))
    assert Dataset is ImageDataset


def test_natural_class_and_file_order_extensions_and_transform(tmp_path):
    for cls in ("c10", "c2", "c1"):
        _save(str(tmp_path / cls / "img10.png"), fmt="PNG")
        _save(str(tmp_path / cls / "img2.jpg"), fmt="JPEG")
        _save(str(tmp_path / cls / "IMG1.JPEG"), fmt="JPEG")
        _save(str(tmp_path / cls / "deeper" / "x.jpeg"), fmt="JPEG")
        (tmp_path / cls / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    ds = ImageDataset(str(tmp_path), transform=lambda img: np.asarray(img).shape)
    assert ds.class_to_idx == {"c1": 0, "c2": 1, "c10": 2}
    names = [os.path.relpath(p, tmp_path) for p, _ in ds.samples[:4]]
    assert names == ["c1/deeper/x.jpeg", "c1/IMG1.JPEG", "c1/img2.jpg", "c1/img10.png"]
    assert [label for _, label in ds.samples] == [0] * 4 + [1] * 4 + [2] * 4
    assert ds[0] == ((5, 6, 3), 0)


def test_grayscale_and_palette_images_come_out_rgb(tmp_path):
    os.makedirs(tmp_path / "a")
    Image.new("L", (4, 4), 77).save(tmp_path / "a" / "g.png")
    Image.new("P", (4, 4), 3).save(tmp_path / "a" / "p.png")
    ds = ImageDataset(str(tmp_path))
    for i in range(2):
        img, _ = ds[i]
        assert img.mode == "RGB" and img.size == (4, 4)
    assert np.asarray(ds[0][0])[0, 0].tolist() == [77, 77, 77]


def test_given_class_to_idx_keeps_labels_of_another_split(tmp_path):
    _save(str(tmp_path / "b" / "x.jpg"))
    ds = ImageDataset(str(tmp_path), class_to_idx={"a": 0, "b": 1, "c": 2})
    assert ds.samples[0][1] == 1
    with pytest.raises(ValueError, match=r"missing from the given class_to_idx: \['b'\]"):
        ImageDataset(str(tmp_path), class_to_idx={"a": 0})


def test_missing_root_names_it_and_the_layout(tmp_path):
    root = str(tmp_path / "train")
    with pytest.raises(FileNotFoundError) as err:
        ImageDataset(root)
    msg = str(err.value)
    assert root + " not found" in msg and "train/<wnid>/*.JPEG" in msg and "data/README.md" in msg


def test_root_without_class_folders(tmp_path):
    _save(str(tmp_path / "loose.jpg"))
    with pytest.raises(FileNotFoundError, match="has no class folders"):
        ImageDataset(str(tmp_path))


def test_empty_class_folder_is_named(tmp_path):
    _save(str(tmp_path / "full" / "x.jpg"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("")
    with pytest.raises(FileNotFoundError, match=r"class folder .*empty holds no images"):
        ImageDataset(str(tmp_path))


@pytest.mark.parametrize("content", [b"definitely not a jpeg", "truncated"])
def test_corrupt_image_is_reported_with_its_path(tmp_path, content):
    _save(str(tmp_path / "a" / "good.jpg"), size=(64, 64))
    bad = tmp_path / "a" / "bad.jpg"
    if content == "truncated":
        data = (tmp_path / "a" / "good.jpg").read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    else:
        bad.write_bytes(content)
    ds = ImageDataset(str(tmp_path))
    bad_index = [p for p, _ in ds.samples].index(str(bad))
    with pytest.raises(ImageReadError, match="cannot decode image " + str(bad)):
        ds[bad_index]
    assert ds[1 - bad_index][0].size == (64, 64)
