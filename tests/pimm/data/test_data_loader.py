import os

import numpy as np
import paddle
import pytest

from pimm.data import ImageDataset, ShardedBatchSampler, create_loader, create_transform
from pimm.data.dataset import load_rgb


def _batches(loader):
    return [(x.numpy(), y.numpy()) for x, y in loader]


def _train_loader(root, **kw):
    args = dict(is_training=True, interpolation="random", auto_augment="rand-m9-mstd0.5", num_workers=0, seed=5)
    args.update(kw)
    return create_loader(ImageDataset(os.path.join(root, "train")), (3, 32, 32), 10, **args)


def test_eval_loader_keeps_order_and_every_sample(demo_data_dir):
    ds = ImageDataset(os.path.join(demo_data_dir, "val"))
    loader = create_loader(ds, (3, 32, 32), 5, num_workers=0, interpolation="bicubic")
    batches = _batches(loader)
    assert len(loader) == 4 and [len(y) for _, y in batches] == [5, 5, 5, 1]
    x, y = batches[0]
    assert x.shape == (5, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.concatenate([y for _, y in batches]).tolist() == [label for _, label in ds.samples]
    # The batch-wise (prefetcher) normalisation equals the per-image transform.
    per_image = create_transform(32, interpolation="bicubic")
    for i in range(5):
        np.testing.assert_allclose(x[i], per_image(load_rgb(ds.samples[i][0])), atol=1e-5)
    again = _batches(create_loader(ds, (3, 32, 32), 5, num_workers=0, use_prefetcher=False, interpolation="bicubic"))
    np.testing.assert_allclose(again[0][0], x, atol=1e-5)


def test_batch_normalization_of_transposed_images_is_c_contiguous():
    from pimm.data.loader import NormalizingCollate, fast_collate
    from pimm.data.transforms import ToNumpy
    from PIL import Image

    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(2)]
    samples = [(ToNumpy()(Image.fromarray(p)), label) for label, p in enumerate(pictures)]
    collate = NormalizingCollate(fast_collate, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    images, labels = collate(samples)
    # the stacked views keep HWC memory; the float batch is laid out as its shape says
    assert images.shape == (2, 3, 6, 5) and images.flags["C_CONTIGUOUS"] and images.dtype == np.float32
    expected = (np.stack(pictures).transpose(0, 3, 1, 2) / 255.0 - np.reshape([0.5, 0.25, 0.0], (1, 3, 1, 1))
                ) / np.reshape([0.5, 0.25, 1.0], (1, 3, 1, 1))
    np.testing.assert_allclose(images, expected, atol=1e-6)
    assert labels.tolist() == [0, 1]


def test_raw_bgr_batches_equal_the_per_image_transform(demo_data_dir):
    ds = ImageDataset(os.path.join(demo_data_dir, "val"))
    raw_bgr = dict(mean=(0, 0, 0), std=(1, 1, 1), max_pixel_value=1.0, color_order="bgr")
    x, _ = next(iter(create_loader(ds, (3, 32, 32), 4, num_workers=0, **raw_bgr)))  # prefetcher
    per_image = create_transform(32, **raw_bgr)
    for i in range(4):
        expected = per_image(load_rgb(ds.samples[i][0]))
        np.testing.assert_array_equal(x.numpy()[i], expected)
        assert expected.max() > 1.0 and expected.min() >= 0.0  # 0-255 values


def test_train_loader_shapes_drop_last_and_shuffle(demo_data_dir):
    loader = _train_loader(demo_data_dir)
    batches = _batches(loader)
    assert len(loader) == 4 and len(batches) == 4  # 48 images, batch 10: the last 8 are dropped
    assert all(x.shape == (10, 3, 32, 32) and x.dtype == np.float32 for x, _ in batches)
    indices = np.concatenate([b for b in loader.batch_sampler])
    assert len(set(indices.tolist())) == 40
    labels = np.concatenate([y for _, y in batches])
    assert labels.tolist() != sorted(labels.tolist())
    assert abs(float(np.concatenate([x for x, _ in batches]).mean())) < 1.5


def test_set_epoch_reshuffles_deterministically(demo_data_dir):
    loader = _train_loader(demo_data_dir)
    loader.set_epoch(3)
    epoch3 = _batches(loader)
    assert loader.epoch == 4  # a pass moves on to the next epoch
    epoch4 = _batches(loader)
    loader.set_epoch(3)
    again = _batches(loader)
    for (xa, ya), (xb, yb) in zip(epoch3, again):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(np.concatenate([y for _, y in epoch3]), np.concatenate([y for _, y in epoch4]))
    fresh = _train_loader(demo_data_dir)
    fresh.set_epoch(3)
    np.testing.assert_array_equal(_batches(fresh)[0][0], epoch3[0][0])


def test_seed_fixes_augmentation_and_order(demo_data_dir):
    a, b, c = (_batches(_train_loader(demo_data_dir, seed=s)) for s in (5, 5, 6))
    np.testing.assert_array_equal(a[0][0], b[0][0])
    np.testing.assert_array_equal(a[-1][1], b[-1][1])
    assert not np.array_equal(a[0][1], c[0][1])


def test_workers_are_deterministic_and_zero_workers_match_one(demo_data_dir):
    kw = dict(re_prob=0.5, re_mode="pixel")
    zero = _batches(_train_loader(demo_data_dir, num_workers=0, **kw))
    one = _batches(_train_loader(demo_data_dir, num_workers=1, **kw))
    two_a = _batches(_train_loader(demo_data_dir, num_workers=2, **kw))
    two_b = _batches(_train_loader(demo_data_dir, num_workers=2, **kw))
    for (x0, y0), (x1, y1), (xa, ya), (xb, yb) in zip(zero, one, two_a, two_b):
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, y0)
    # Workers 0 and 1 draw from different streams: the second batch (worker 1) differs from 1-worker run.
    assert not np.array_equal(two_a[1][0], one[1][0])
    np.testing.assert_array_equal(two_a[0][0], one[0][0])


def test_loaders_iterated_together_in_process_draw_what_each_draws_alone(demo_data_dir):
    # two in-process loaders (the P-DARTS search's two halves) decode on Paddle's reader threads at
    # the same time; their augmentation must not depend on how those threads interleave
    kw = dict(num_workers=0, re_prob=0.5, re_mode="pixel")
    alone = [_batches(_train_loader(demo_data_dir, seed=s, **kw)) for s in (1, 2)]
    first, second = (_train_loader(demo_data_dir, seed=s, **kw) for s in (1, 2))
    together = [(a[0].numpy(), b[0].numpy()) for a, b in zip(first, second)]
    for (x1, x2), (a1, _), (a2, _) in zip(together, *alone):
        np.testing.assert_array_equal(x1, a1)
        np.testing.assert_array_equal(x2, a2)


def test_batch_random_erasing_in_prefetcher(demo_data_dir):
    plain = _batches(_train_loader(demo_data_dir, auto_augment=None))
    erased = _batches(_train_loader(demo_data_dir, auto_augment=None, re_prob=1.0, re_mode="const"))
    # Erasing follows the per-image transforms of a batch, so the first batch differs only by it.
    for img_p, img_e in zip(plain[0][0], erased[0][0]):
        changed = np.any(img_p != img_e, axis=0)
        rows, cols = np.nonzero(changed)
        box = (slice(None), slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        assert np.all(img_e[box] == 0.0) and changed.sum() == img_e[box][0].size
    for x, _ in erased:
        assert all(np.any(np.all(img == 0.0, axis=0)) for img in x)
    assert not any(np.any(np.all(img == 0.0, axis=0)) for x, _ in plain for img in x)


@pytest.mark.parametrize("size,shuffle,drop_last", [(48, True, True), (50, True, False), (7, False, False)])
def test_distributed_shards_are_disjoint_and_cover(size, shuffle, drop_last):
    data = list(range(size))
    shards = []
    for rank in range(2):
        sampler = ShardedBatchSampler(data, 4, num_replicas=2, rank=rank, shuffle=shuffle, drop_last=drop_last, seed=1)
        sampler.set_epoch(2)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert all(len(b) == 4 for b in batches[:-1])
        shards.append(np.concatenate(batches))
    if drop_last:
        assert len(shards[0]) == len(shards[1]) == (size // 2) // 4 * 4
        assert not set(shards[0]) & set(shards[1])
    else:
        # Padded to equal length by wrapping around; the union covers everything.
        assert len(shards[0]) == len(shards[1]) == -(-size // 2)
        assert set(shards[0]) | set(shards[1]) == set(range(size))
        assert len(np.concatenate(shards)) - size == (-size) % 2
        if size % 2 == 0:
            assert not set(shards[0]) & set(shards[1])


def test_create_loader_distributed_uses_given_rank(demo_data_dir):
    labels = []
    for rank in range(2):
        ds = ImageDataset(os.path.join(demo_data_dir, "val"))
        loader = create_loader(ds, 32, 4, distributed=True, num_replicas=2, rank=rank, num_workers=0)
        assert len(loader) == 2
        labels.append(np.concatenate([y.numpy() for _, y in loader]))
    all_labels = [label for _, label in ds.samples]
    assert labels[0].tolist() == all_labels[0::2] and labels[1].tolist() == all_labels[1::2]
    with pytest.raises(ValueError, match="rank 2 is outside"):
        create_loader(ds, 32, 4, distributed=True, num_replicas=2, rank=2)


def test_loader_yields_paddle_tensors(demo_data_dir):
    ds = ImageDataset(os.path.join(demo_data_dir, "val"))
    x, y = next(iter(create_loader(ds, 32, 4, num_workers=0)))
    assert isinstance(x, paddle.Tensor) and isinstance(y, paddle.Tensor)
    assert x.dtype == paddle.float32 and y.dtype == paddle.int64 and list(y.shape) == [4]


def test_train_loader_crop_scale(demo_data_dir):
    from pimm.data import RandomResizedCropAndInterpolation

    def crop_scale(**kwargs):
        loader = create_loader(ImageDataset(os.path.join(demo_data_dir, "train")), 32, 8, is_training=True,
                               num_workers=0, seed=0, **kwargs)
        return next(t for t in loader.dataset.transform.transforms
                    if isinstance(t, RandomResizedCropAndInterpolation)).scale

    assert crop_scale() == (0.08, 1.0)  # timm's default
    assert crop_scale(scale=(0.5, 1.0)) == (0.5, 1.0)
