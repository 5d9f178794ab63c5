import numpy as np
import paddle
import pytest

from pimm.data import AugRandom, RandomErasing


def _images(shape, value=5.0):
    return np.full(shape, value, dtype=np.float32)


def _erased_box(changed):
    rows, cols = np.nonzero(changed)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def test_probability_zero_is_untouched_and_one_always_erases():
    img = _images((3, 20, 30))
    assert np.all(RandomErasing(0.0, rng=AugRandom(0))(img.copy()) == 5.0)
    for seed in range(20):
        out = RandomErasing(1.0, mode="const", rng=AugRandom(seed))(img.copy())
        changed = np.any(out != 5.0, axis=0)
        top, bottom, left, right = _erased_box(changed)
        # One rectangle of zeros, area in [2%, 1/3] of the image (up to rounding of its sides).
        assert changed.sum() == (bottom - top) * (right - left)
        assert np.all(out[:, top:bottom, left:right] == 0.0)
        assert 0.02 * 600 * 0.7 <= changed.sum() <= 600 / 3 * 1.3
        aspect = (bottom - top) / (right - left)
        assert 0.3 * 0.6 <= aspect <= 1 / 0.3 * 1.6


def test_fill_modes():
    out = RandomErasing(1.0, mode="pixel", rng=AugRandom(1))(_images((3, 40, 40)))
    erased = out[:, np.any(out != 5.0, axis=0)]
    assert erased.size > 100 and 0.7 < erased.std() < 1.3 and abs(erased.mean()) < 0.3
    out = RandomErasing(1.0, mode="rand", rng=AugRandom(1))(_images((3, 40, 40)))
    erased = out[:, np.any(out != 5.0, axis=0)]
    assert np.all(erased == erased[:, :1]) and not np.allclose(erased[:, 0], 0)
    with pytest.raises(ValueError, match="unknown random erasing mode 'noise'"):
        RandomErasing(mode="noise")


def test_seeded_determinism_and_count():
    batch = _images((6, 3, 24, 24))
    eraser = lambda seed: RandomErasing(0.5, mode="pixel", max_count=3, rng=AugRandom(seed))  # noqa: E731
    first, again, other = eraser(2)(batch.copy()), eraser(2)(batch.copy()), eraser(3)(batch.copy())
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    touched = [bool(np.any(img != 5.0)) for img in np.concatenate([first, other])]
    assert 0 < sum(touched) < len(touched)


def test_paddle_batch_matches_numpy_batch():
    batch = np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)
    expected = RandomErasing(1.0, mode="pixel", max_count=2, rng=AugRandom(9))(batch.copy())
    tensor = paddle.to_tensor(batch)
    out = RandomErasing(1.0, mode="pixel", max_count=2, rng=AugRandom(9))(tensor)
    np.testing.assert_array_equal(out.numpy(), expected)
    assert not np.array_equal(expected, batch)
