import numpy as np
import pytest
from PIL import Image

from pimm.data import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    AugRandom,
    ColorJitter,
    RandomHorizontalFlip,
    RandomResizedCropAndInterpolation,
    create_transform,
    seed_augmentation,
)
from pimm.data.transforms_factory import eval_resize_size

MEAN = np.array(IMAGENET_DEFAULT_MEAN, dtype=np.float64)
STD = np.array(IMAGENET_DEFAULT_STD, dtype=np.float64)


def _pattern(width, height, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def _normalize(hwc_uint8):
    return ((hwc_uint8.astype(np.float64) / 255.0 - MEAN) / STD).transpose(2, 0, 1)


def test_eval_transform_exact_values_without_resize():
    # Shorter side already int(32 / 0.875) = 36: no resize; centre crop rows 9..41, columns 2..34.
    img = _pattern(36, 50)
    out = create_transform(32, crop_pct=0.875)(img)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    expected = _normalize(np.asarray(img)[9:41, 2:34])
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-6)


def test_eval_centre_crop_rounds_half_to_even():
    img = _pattern(36, 41)  # (41 - 32) / 2 = 4.5 -> 4, as torchvision's round()
    out = create_transform(32, crop_pct=0.875, use_prefetcher=True)(img)
    assert out.dtype == np.uint8 and out.shape == (3, 32, 32)
    np.testing.assert_array_equal(out, np.asarray(img)[4:36, 2:34].transpose(2, 0, 1))


def test_eval_resize_sizes_and_constant_colour_values():
    colour = (10, 200, 255)
    img = Image.new("RGB", (100, 70), colour)
    for interpolation in ("bilinear", "bicubic"):
        out = create_transform((3, 64, 64), interpolation=interpolation)(img)
        assert out.shape == (3, 64, 64)
        expected = (np.array(colour) / 255.0 - MEAN) / STD
        np.testing.assert_allclose(out[:, 10, 20], expected, atol=2e-6)
        np.testing.assert_allclose(out.std(axis=(1, 2)), 0, atol=1e-6)
    assert eval_resize_size(224) == 256 and eval_resize_size(64) == 73 and eval_resize_size(224, 1.0) == 224
    assert eval_resize_size((32, 48)) == (36, 54)
    assert create_transform((3, 32, 48))(img).shape == (3, 32, 48)


def test_eval_resize_matches_pil_on_shorter_side():
    img = _pattern(80, 60)
    out = create_transform(32, crop_pct=0.875, interpolation="bicubic", use_prefetcher=True)(img)
    resized = np.asarray(img.resize((48, 36), Image.BICUBIC))  # shorter side 36, width int(36 * 80 / 60)
    np.testing.assert_array_equal(out, resized[2:34, 8:40].transpose(2, 0, 1))


def test_random_resized_crop_bounds_determinism_and_fallback():
    crop = RandomResizedCropAndInterpolation(16, interpolation="random")
    boxes = [crop.get_params(120, 90, AugRandom(s)) for s in range(50)]
    for top, left, h, w in boxes:
        assert 0 <= top <= 90 - h and 0 <= left <= 120 - w
        assert 0.08 * 120 * 90 * 0.9 <= h * w <= 120 * 90
        assert 3 / 4 * 0.85 <= w / h <= 4 / 3 * 1.15
    assert boxes == [crop.get_params(120, 90, AugRandom(s)) for s in range(50)]
    assert len(set(boxes)) > 40
    # A 100x10 image cannot host a crop of 90-100% area with ratio in [3/4, 4/3]: centred 4/3 crop.
    strict = RandomResizedCropAndInterpolation(8, scale=(0.9, 1.0))
    assert strict.get_params(100, 10, AugRandom(0)) == (0, 43, 10, 13)
    assert strict.get_params(10, 100, AugRandom(0)) == (43, 0, 13, 10)


def test_random_interpolation_uses_both_filters():
    img = _pattern(40, 40)
    full = RandomResizedCropAndInterpolation(24, scale=(1.0, 1.0), ratio=(1.0, 1.0), interpolation="random")
    bilinear = np.asarray(img.resize((24, 24), Image.BILINEAR))
    bicubic = np.asarray(img.resize((24, 24), Image.BICUBIC))
    seen = set()
    for seed in range(12):
        full.rng = AugRandom(seed)
        out = np.asarray(full(img))
        seen.add("bilinear" if np.array_equal(out, bilinear) else "bicubic" if np.array_equal(out, bicubic) else "?")
    assert seen == {"bilinear", "bicubic"}
    with pytest.raises(ValueError, match="unknown interpolation 'area'"):
        RandomResizedCropAndInterpolation(24, interpolation="area")


def test_flip_probabilities():
    img = _pattern(9, 7)
    assert np.array_equal(np.asarray(RandomHorizontalFlip(p=0.0)(img)), np.asarray(img))
    assert np.array_equal(np.asarray(RandomHorizontalFlip(p=1.0)(img)), np.asarray(img)[:, ::-1])
    flips = [RandomHorizontalFlip(rng=AugRandom(s))(img) is not img for s in range(200)]
    assert 70 < sum(flips) < 130


def test_color_jitter_zero_is_identity_and_random_otherwise():
    img = _pattern(16, 16)
    assert not ColorJitter(0, 0, 0).active
    assert np.array_equal(np.asarray(ColorJitter(0, 0, 0)(img)), np.asarray(img))
    outs = [np.asarray(ColorJitter(0.4, 0.4, 0.4, 0.1, rng=AugRandom(s))(img)) for s in (1, 1, 2)]
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])
    # Brightness alone scales pixel values by a factor in [0.6, 1.4].
    bright = np.asarray(ColorJitter(brightness=0.4, rng=AugRandom(3))(Image.new("RGB", (4, 4), (100, 100, 100))))
    assert 60 <= bright[0, 0, 0] <= 140 and bright[0, 0, 0] != 100
    with pytest.raises(ValueError, match="hue <= 0.5"):
        ColorJitter(hue=0.7)
    with pytest.raises(ValueError, match="color_jitter must be"):
        create_transform(32, is_training=True, color_jitter=(0.1, 0.2))


@pytest.mark.parametrize(
    "aug", [dict(), dict(auto_augment="rand-m9-mstd0.5"), dict(auto_augment="original", re_prob=0.5, re_mode="pixel")]
)
def test_train_pipeline_is_deterministic_under_a_seed(aug):
    img = _pattern(60, 50)
    transform = create_transform((3, 32, 32), is_training=True, interpolation="random", **aug)

    def run(seed):
        seed_augmentation(seed)
        return np.stack([transform(img) for _ in range(4)])

    first, again, other = run(7), run(7), run(8)
    assert first.shape == (4, 3, 32, 32) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first[0], first[1])


def test_train_pipeline_without_randomness_is_resize_and_normalize():
    # Full-image crop, no flip, no jitter: only the resize remains.
    img = _pattern(40, 40)
    t = create_transform(20, is_training=True, color_jitter=0.0)
    t.transforms[0].scale, t.transforms[0].ratio = (1.0, 1.0), (1.0, 1.0)
    t.transforms[1].p = 0.0
    out = t(img)
    expected = _normalize(np.asarray(img.resize((20, 20), Image.BILINEAR)))
    np.testing.assert_allclose(out, expected, atol=2e-6)
    assert [type(s).__name__ for s in t.transforms] == [
        "RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "ToNormalizedArray"
    ]


def test_pipelines_pickle_for_spawned_workers():
    import pickle

    img = _pattern(50, 40)
    for aug in (dict(), dict(auto_augment="rand-m9-n3-mstd0.5-inc1"), dict(auto_augment="v0", re_prob=1.0)):
        transform = create_transform(32, is_training=True, color_jitter=(0.4, 0.4, 0.4, 0.1), **aug)
        clone = pickle.loads(pickle.dumps(transform))
        seed_augmentation(1)
        expected = transform(img)
        seed_augmentation(1)
        np.testing.assert_array_equal(clone(img), expected)


# Official SPOS checkpoints take OpenCV's BGR images, 0-255, unnormalised.
RAW_BGR = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), max_pixel_value=1.0, color_order="bgr")


def test_raw_bgr_option_gives_the_pixel_values_in_bgr_order():
    img = _pattern(36, 50)  # eval: no resize, centre crop rows 9..41, columns 2..34
    crop = np.asarray(img)[9:41, 2:34]
    out = create_transform(32, crop_pct=0.875, **RAW_BGR)(img)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, crop[:, :, ::-1].transpose(2, 0, 1).astype(np.float32))
    # training pipeline without randomness: resize, then the same conversion
    img = _pattern(40, 40)
    t = create_transform(20, is_training=True, color_jitter=0.0, **RAW_BGR)
    t.transforms[0].scale, t.transforms[0].ratio = (1.0, 1.0), (1.0, 1.0)
    t.transforms[1].p = 0.0
    resized = np.asarray(img.resize((20, 20), Image.BILINEAR))
    np.testing.assert_array_equal(t(img), resized[:, :, ::-1].transpose(2, 0, 1).astype(np.float32))


def test_mean_and_std_stay_in_rgb_order_whatever_the_output_order():
    img = _pattern(32, 32)
    rgb = create_transform(32, crop_pct=1.0)(img)
    bgr = create_transform(32, crop_pct=1.0, color_order="bgr")(img)
    np.testing.assert_array_equal(bgr, rgb[::-1])
    scaled = create_transform(32, crop_pct=1.0, max_pixel_value=1.0, mean=[m * 255 for m in MEAN],
                              std=[s * 255 for s in STD])(img)
    np.testing.assert_allclose(scaled, rgb, atol=2e-6)
    for bad in (dict(color_order="BGR"), dict(max_pixel_value=0.0)):
        with pytest.raises(ValueError, match="color_order|max_pixel_value"):
            create_transform(32, **bad)
