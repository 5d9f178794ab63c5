"""pimm.data.make_demo_cifar: the demo images as CIFAR-10 python batches."""
import os

import numpy as np
import pytest

from pimm.data import CIFAR10, make_demo_cifar, read_cifar_batch


def test_batches_hold_every_class_shuffled_and_are_reproducible(tmp_path):
    root = make_demo_cifar(str(tmp_path / "a"), num_classes=4, train_per_class=6, test_per_class=2, seed=3)
    names = sorted(os.listdir(root))
    assert names == ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    train, test = CIFAR10(root, train=True), CIFAR10(root, train=False)
    assert len(train) == 24 and len(test) == 8
    assert np.bincount(train.labels).tolist() == [6] * 4 and sorted(test.labels.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    # dealt out shuffled: the first half (the P-DARTS weights part) is not all of one class
    assert len(set(train.labels[:12].tolist())) > 1 and len(set(train.labels[12:].tolist())) > 1
    assert train.images.shape == (24, 32, 32, 3) and train.images.std() > 20  # real pictures, not blank
    again = make_demo_cifar(str(tmp_path / "b"), num_classes=4, train_per_class=6, test_per_class=2, seed=3)
    for name in names:
        with open(os.path.join(root, name), "rb") as f, open(os.path.join(again, name), "rb") as g:
            assert f.read() == g.read()
    other = read_cifar_batch(make_demo_cifar(str(tmp_path / "c"), 4, 6, 2, seed=4) + "/test_batch")[0]
    assert not np.array_equal(other, test.images)


def test_refuses_what_cifar_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="1 to 10 classes"):
        make_demo_cifar(str(tmp_path), num_classes=11)
    with pytest.raises(ValueError, match="at least 5 training images"):
        make_demo_cifar(str(tmp_path), num_classes=2, train_per_class=2)
