"""CIFAR-10 python batches: our writer, the restricted reader, the dataset, transforms and loader."""
import os
import pickle

import numpy as np
import paddle
import pytest
from PIL import Image

from pimm.data import (CIFAR10, CIFAR10_DEFAULT_MEAN, CIFAR10_DEFAULT_STD, AugRandom, CifarFormatError, Cutout,
                       RandomCrop, create_loader, create_transform, read_cifar_batch, write_cifar_batch)


def _images(count, seed=0):
    rng = np.random.RandomState(seed)
    return rng.randint(0, 256, (count, 32, 32, 3)).astype(np.uint8), rng.randint(0, 10, count)


def test_written_batches_have_the_real_layout(tmp_path):
    images, labels = _images(7)
    path = str(tmp_path / "data_batch_1")
    write_cifar_batch(path, images, labels, batch_label="training batch 1 of 5")
    # what the usual recipe (pickle.load(f, encoding='bytes')) sees in the real files
    with open(path, "rb") as f:
        raw = f.read()
    assert raw.startswith(b"\x80\x02}")  # a protocol-2 pickle of a dict, as Python 2 wrote them
    batch = pickle.loads(raw, encoding="bytes")
    assert sorted(batch) == [b"batch_label", b"data", b"filenames", b"labels"]
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (7, 3072)
    assert batch[b"labels"] == labels.tolist() and batch[b"batch_label"] == b"training batch 1 of 5"
    assert batch[b"filenames"][0] == b"image_00000.png"
    # 1024 red values row by row, then green, then blue
    np.testing.assert_array_equal(batch[b"data"][3, 1024:2048].reshape(32, 32), images[3, :, :, 1])
    read_images, read_labels = read_cifar_batch(path)
    np.testing.assert_array_equal(read_images, images)
    assert read_labels.dtype == np.int64 and read_labels.tolist() == labels.tolist()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_batches_pickled_again_by_python3_are_read(tmp_path, protocol):
    images, labels = _images(3)
    write_cifar_batch(str(tmp_path / "b"), images, labels)
    with open(tmp_path / "b", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    (tmp_path / "again").write_bytes(pickle.dumps(batch, protocol=protocol))
    np.testing.assert_array_equal(read_cifar_batch(str(tmp_path / "again"))[0], images)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickles_are_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "data_batch_1"
    evil.write_bytes(pickle.dumps({b"data": _Payload(marker), b"labels": [0]}, protocol=2))
    with pytest.raises(CifarFormatError, match=r"asks for (posix|os)\.system.*refused without calling it"):
        read_cifar_batch(str(evil))
    assert not marker.exists()
    # a global hidden where the real files name numpy's array rebuilder
    images, labels = _images(2)
    write_cifar_batch(str(tmp_path / "ok"), images, labels)
    raw = (tmp_path / "ok").read_bytes().replace(b"cnumpy.core.multiarray\n_reconstruct\n", b"cbuiltins\nexec\n")
    evil.write_bytes(raw)
    with pytest.raises(CifarFormatError, match="builtins.exec"):
        read_cifar_batch(str(evil))
    # an array claiming far more data than the file holds is refused before any allocation
    raw = (tmp_path / "ok").read_bytes().replace(b"K\x02M\x00\x0c\x86", b"J\x00\xe1\xf5\x05M\x00\x0c\x86")
    evil.write_bytes(raw)
    with pytest.raises(CifarFormatError, match="array data does not match its shape"):
        read_cifar_batch(str(evil))
    # object arrays (which unpickle arbitrary objects) are not CIFAR data
    evil.write_bytes(pickle.dumps({b"data": np.array([1, "x"], dtype=object)}, protocol=2))
    with pytest.raises(CifarFormatError, match="not a CIFAR-10 python batch"):
        read_cifar_batch(str(evil))


def _batch_dict(**changes):
    """A valid batch dict (bytes keys, as the real files), with keys replaced or (None) removed."""
    images, labels = _images(2)
    batch = {"data": images.transpose(0, 3, 1, 2).reshape(2, 3072), "labels": labels.tolist(),
             "batch_label": b"x", "filenames": [b"a.png", b"b.png"]}
    batch.update(changes)
    return {k.encode(): v for k, v in batch.items() if v is not None}


@pytest.mark.parametrize("batch, message", [
    ([1, 2], "holds a list, not a dict"),
    (_batch_dict(labels=None), r"keys \['batch_label', 'data', 'filenames'\]"),
    (_batch_dict(extra=b"1"), "keys"),
    (_batch_dict(labels=[3, 10]), "'labels' must be a list of 2 ints in 0..9"),
    (_batch_dict(labels=[3]), "'labels' must be a list of 2"),
    (_batch_dict(data=np.zeros((2, 1024), np.uint8)), r"'data' must be a uint8 array \[N, 3072\]"),
    (_batch_dict(data=np.zeros((2, 3072), np.float32)), "dtype"),
    (_batch_dict(filenames=[b"a.png"]), "'filenames' must be a list of 2 names"),
])
def test_structure_is_validated(tmp_path, batch, message):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(batch, protocol=4))
    with pytest.raises(CifarFormatError, match=message):
        read_cifar_batch(str(path))


def test_corrupt_and_missing_files(tmp_path):
    images, labels = _images(2)
    write_cifar_batch(str(tmp_path / "b"), images, labels)
    (tmp_path / "cut").write_bytes((tmp_path / "b").read_bytes()[:500])
    with pytest.raises(CifarFormatError, match="cut is not a readable CIFAR-10 python batch"):
        read_cifar_batch(str(tmp_path / "cut"))
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py/data_batch_1..5 and test_batch"):
        read_cifar_batch(str(tmp_path / "nothing"))


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    """A cifar-10-batches-py folder of 5 training batches of 4 images and a test batch of 6."""
    parent = tmp_path_factory.mktemp("cifar")
    root = parent / "cifar-10-batches-py"
    for i in range(1, 6):
        images, labels = _images(4, seed=i)
        write_cifar_batch(str(root / f"data_batch_{i}"), images, labels)
    write_cifar_batch(str(root / "test_batch"), *_images(6, seed=9))
    return parent


def test_dataset_splits_subsets_and_items(cifar_root):
    train = CIFAR10(str(cifar_root), train=True)  # the folder holding cifar-10-batches-py
    assert len(train) == 20 and train.classes[0] == "airplane" and len(train.classes) == 10
    img, label = train[5]  # the second image of data_batch_2
    images, labels = _images(4, seed=2)
    assert isinstance(img, Image.Image) and img.size == (32, 32)
    np.testing.assert_array_equal(np.asarray(img), images[1])
    assert label == labels[1]
    test = CIFAR10(str(cifar_root / "cifar-10-batches-py"), train=False)
    assert len(test) == 6
    half = CIFAR10(str(cifar_root), indices=range(10, 20))
    np.testing.assert_array_equal(np.asarray(half[0][0]), np.asarray(train[10][0]))
    with pytest.raises(IndexError):
        CIFAR10(str(cifar_root), indices=[20])


def test_dataset_names_missing_batches(tmp_path):
    write_cifar_batch(str(tmp_path / "data_batch_1"), *_images(2))
    with pytest.raises(FileNotFoundError, match="has no data_batch_2, data_batch_3, data_batch_4, data_batch_5"):
        CIFAR10(str(tmp_path))


def test_random_crop_pads_with_zeros_and_stays_within_the_padding():
    img = Image.fromarray(np.full((32, 32, 3), 200, np.uint8))
    crop = RandomCrop(32, padding=4, rng=AugRandom(0))
    offsets = set()
    for _ in range(200):
        out = np.asarray(crop(img))[:, :, 0]
        assert out.shape == (32, 32)
        rows, cols = np.nonzero(out == 200)
        # the image block is 32 - |dy| high and 32 - |dx| wide, the rest padding zeros
        dy, dx = 32 - (rows.max() - rows.min() + 1), 32 - (cols.max() - cols.min() + 1)
        assert 0 <= dy <= 4 and 0 <= dx <= 4 and (out == 200).sum() == (32 - dy) * (32 - dx)
        offsets.add((int(rows.min() > 0) * dy, int(cols.min() > 0) * dx))
    assert (4, 4) in offsets and (0, 0) in offsets


def test_cutout_zeroes_a_clipped_square():
    images = np.ones((64, 3, 32, 32), np.float32)
    Cutout(16, rng=AugRandom(0))(images)
    sizes = [(images[i, 0] == 0).sum() for i in range(64)]
    assert max(sizes) == 256 and min(sizes) >= 64 and min(sizes) < 256  # 8x8 at a corner at least
    assert all((images[i] == 0).all(axis=0).sum() == sizes[i] for i in range(64))  # all channels
    tensor = paddle.ones([3, 32, 32])
    Cutout(16, rng=AugRandom(1))(tensor)
    assert 64 <= int((tensor.numpy()[0] == 0).sum()) <= 256


@pytest.mark.parametrize("use_prefetcher", [True, False])
def test_loader_applies_the_cifar_pipeline(cifar_root, use_prefetcher):
    mean = np.asarray(CIFAR10_DEFAULT_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(CIFAR10_DEFAULT_STD, np.float32).reshape(1, 3, 1, 1)
    test = CIFAR10(str(cifar_root), train=False)
    loader = create_loader(test, 32, 3, pipeline="cifar", use_prefetcher=use_prefetcher, num_workers=0, seed=0)
    images, labels = next(iter(loader))
    expected = (_images(6, seed=9)[0][:3].transpose(0, 3, 1, 2) / 255.0 - mean) / std
    np.testing.assert_allclose(images.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert labels.numpy().tolist() == _images(6, seed=9)[1][:3].tolist()

    train = CIFAR10(str(cifar_root), train=True)
    loader = create_loader(train, 32, 4, is_training=True, pipeline="cifar", cutout_length=16,
                           use_prefetcher=use_prefetcher, num_workers=0, seed=0)
    assert len(loader) == 5
    batches = [images.numpy() for images, _ in loader]
    for batch in batches:
        assert batch.shape == (4, 3, 32, 32) and batch.dtype == np.float32
        # every image has a cut square of exact zeros in all channels (8x8 to 16x16)
        cut = (batch == 0).all(axis=1).sum(axis=(1, 2))
        assert ((cut >= 64) & (cut <= 256)).all()
    # padding pixels (black before normalisation) show up as -mean/std on some crops
    black = (-mean / std).reshape(3)
    assert any(np.isclose(b[:, :, 0, 0], black, atol=1e-5).all(axis=1).any() for b in batches)


def test_pipeline_options_that_do_not_apply_are_refused():
    with pytest.raises(ValueError, match="Cutout is part of the cifar pipeline"):
        create_transform(224, is_training=True, cutout_length=16)
    with pytest.raises(ValueError, match="not part of the cifar pipeline"):
        create_transform(32, is_training=True, pipeline="cifar", re_prob=0.25)
    with pytest.raises(ValueError, match="unknown pipeline 'mnist'"):
        create_transform(32, pipeline="mnist")
