import numpy as np
import pytest
from PIL import Image

from pimm.data import (
    IMAGENET_DEFAULT_MEAN,
    AugmentOp,
    AugRandom,
    AutoAugment,
    RandAugment,
    augment_from_string,
    auto_augment_transform,
    rand_augment_transform,
)
from pimm.data import auto_augment as aa


def _pattern(size=24, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def test_rand_string_parsing():
    ra = rand_augment_transform("rand-m9-mstd0.5")
    assert isinstance(ra, RandAugment) and ra.num_layers == 2 and ra.choice_weights is None
    assert [op.name for op in ra.ops] == list(aa.RAND_OPS) and len(ra.ops) == 15
    assert {(op.magnitude, op.magnitude_std, op.prob) for op in ra.ops} == {(9.0, 0.5, 0.5)}

    inc = rand_augment_transform("rand-m7-n3-inc1")
    assert inc.num_layers == 3 and inc.ops[0].magnitude == 7.0 and inc.ops[0].magnitude_std == 0.0
    assert "SolarizeIncreasing" in [op.name for op in inc.ops] and "Solarize" not in [op.name for op in inc.ops]
    # timm 0.1.20 turned 'inc0' on; here 0 means off.
    assert [op.name for op in rand_augment_transform("rand-inc0").ops] == list(aa.RAND_OPS)
    assert rand_augment_transform("rand").ops[0].magnitude == 10.0

    weighted = rand_augment_transform("rand-w0")
    assert weighted.choice_weights.sum() == pytest.approx(1.0)
    names = [op.name for op in weighted.ops]
    assert weighted.choice_weights[names.index("Invert")] == 0.0
    assert weighted.choice_weights[names.index("Rotate")] == pytest.approx(0.3)

    for bad in ("rand-x9", "rand-m", "rand-mfast", "rand-w1", "randy-m9"):
        with pytest.raises(ValueError):
            rand_augment_transform(bad)


def test_auto_augment_policies_and_strings():
    for name in ("original", "v0", "originalr", "v0r"):
        aut = auto_augment_transform(name + "-mstd0.5")
        assert isinstance(aut, AutoAugment) and len(aut.policy) == 25
        assert all(len(sub) == 2 and sub[0].magnitude_std == 0.5 for sub in aut.policy)
    first = auto_augment_transform("original").policy[0]
    assert [(op.name, op.prob, op.magnitude) for op in first] == [("PosterizeOriginal", 0.4, 8), ("Rotate", 0.6, 9)]
    assert auto_augment_transform("originalr").policy[0][0].name == "PosterizeIncreasing"
    with pytest.raises(ValueError, match="unknown AutoAugment policy 'v1'"):
        auto_augment_transform("v1")
    with pytest.raises(ValueError, match="AugMix is not supported"):
        augment_from_string("augmix-m5", (32, 32), IMAGENET_DEFAULT_MEAN)


def test_pipeline_hparams_from_size_mean_and_interpolation():
    ra = augment_from_string("rand-m9", (64, 48), IMAGENET_DEFAULT_MEAN, interpolation="bicubic")
    op = ra.ops[0]
    assert op.hparams["translate_const"] == int(48 * 0.45)
    assert op.fill == (124, 116, 104)
    assert op.resamples == (Image.BICUBIC,)
    assert augment_from_string("v0", (64, 64), IMAGENET_DEFAULT_MEAN).policy[0][0].resamples == (
        Image.BILINEAR,
        Image.BICUBIC,
    )


def test_level_to_argument_scaling():
    rng = AugRandom(0)
    assert abs(aa._rotate_arg(5, {}, rng)) == 15.0
    assert aa._enhance_arg(9, {}, rng) == pytest.approx(1.72)
    assert aa._enhance_increasing_arg(10, {}, rng) in (pytest.approx(0.1), pytest.approx(1.9))
    assert abs(aa._shear_arg(10, {}, rng)) == pytest.approx(0.3)
    assert abs(aa._translate_rel_arg(10, {}, rng)) == pytest.approx(0.45)
    assert abs(aa._translate_abs_arg(5, {"translate_const": 100}, rng)) == 50.0
    posterize = (aa._posterize_arg, aa._posterize_increasing_arg, aa._posterize_original_arg)
    assert [level_fn(10, {}, rng) for level_fn in posterize] == [4, 0, 8]
    solarize = (aa._solarize_arg, aa._solarize_increasing_arg)
    assert [level_fn(10, {}, rng) for level_fn in solarize] + [aa._solarize_add_arg(5, {}, rng)] == [256, 0, 55]
    signs = {np.sign(aa._rotate_arg(5, {}, AugRandom(s))) for s in range(20)}
    assert signs == {-1.0, 1.0}


def test_pixel_ops_exact_values():
    img = Image.fromarray(np.array([[[100, 200, 127]]], dtype=np.uint8))
    out = AugmentOp("SolarizeAdd", prob=1.0, magnitude=5)(img)  # +55 below 128
    assert np.asarray(out)[0, 0].tolist() == [155, 200, 182]
    out = AugmentOp("Solarize", prob=1.0, magnitude=5)(img)  # threshold 128: invert >= 128
    assert np.asarray(out)[0, 0].tolist() == [100, 55, 127]
    out = AugmentOp("Posterize", prob=1.0, magnitude=5)(img)  # keep 2 bits
    assert np.asarray(out)[0, 0].tolist() == [64, 192, 64]
    assert np.asarray(AugmentOp("Invert", prob=1.0)(img))[0, 0].tolist() == [155, 55, 128]


def test_geometric_ops_fill_with_mean_colour():
    black = Image.new("RGB", (20, 20), (0, 0, 0))
    hp = {"img_mean": (124, 116, 104), "translate_pct": 0.45, "interpolation": Image.NEAREST}
    out = np.asarray(AugmentOp("TranslateXRel", prob=1.0, magnitude=10, hparams=hp, rng=AugRandom(1))(black))
    filled = np.all(out == (124, 116, 104), axis=-1)
    assert filled.sum() == 20 * 9 and (np.all(filled[:, :9]) or np.all(filled[:, -9:]))
    assert np.all(out[~filled] == 0)


def test_probability_zero_leaves_image_untouched_and_one_always_applies():
    img = _pattern()
    for name in aa.OPS:
        assert AugmentOp(name, prob=0.0, magnitude=10)(img) is img
    for name in ("Rotate", "ShearX", "Equalize", "Color"):
        changed = AugmentOp(name, prob=1.0, magnitude=10, rng=AugRandom(0))(img)
        assert not np.array_equal(np.asarray(changed), np.asarray(img)), name


def test_magnitude_noise_is_seeded_and_clipped_to_0_10():
    img = Image.new("RGB", (2, 2), (100, 100, 100))
    op = AugmentOp("SolarizeAdd", prob=1.0, magnitude=5, hparams={"magnitude_std": 50.0})
    added = []
    for seed in range(40):
        op.rng = AugRandom(seed)
        added.append(int(np.asarray(op(img))[0, 0, 0]) - 100)
    # Level 0..10 adds 0..110; noise this wide hits both ends of the clipped range.
    assert min(added) == 0 and max(added) == 110 and len(set(added)) > 3
    op.rng = AugRandom(7)
    first = np.asarray(op(img))
    op.rng = AugRandom(7)
    np.testing.assert_array_equal(np.asarray(op(img)), first)


@pytest.mark.parametrize("spec", ["rand-m9-mstd0.5", "rand-m9-n3-inc1", "original", "v0"])
def test_augmentations_are_deterministic_under_a_seed(spec):
    img = _pattern(32)

    def run(seed):
        t = augment_from_string(spec, (32, 32), IMAGENET_DEFAULT_MEAN, rng=AugRandom(seed))
        return np.stack([np.asarray(t(img)) for _ in range(6)])

    first = run(11)
    np.testing.assert_array_equal(first, run(11))
    assert not np.array_equal(first, run(12))
    assert any(not np.array_equal(frame, np.asarray(img)) for frame in first)
