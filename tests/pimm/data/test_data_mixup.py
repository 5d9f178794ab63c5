import numpy as np
import paddle
import pytest

from pimm.data import Mixup, mixup_target, one_hot


def _batch(size=6, hw=16):
    # Image i is the constant i + 1, so every mixed pixel tells where it came from.
    x = np.broadcast_to(np.arange(1, size + 1, dtype=np.float32)[:, None, None, None], (size, 3, hw, hw)).copy()
    return paddle.to_tensor(x), paddle.to_tensor(np.array([0, 1, 2, 3, 0, 1][:size], dtype=np.int64))


def test_one_hot_and_smoothed_mixed_targets():
    target = paddle.to_tensor([2, 0, 1], dtype="int64")
    np.testing.assert_array_equal(one_hot(target, 3).numpy(), np.eye(3)[[2, 0, 1]])
    smoothed = mixup_target(target, 4, lam=1.0, smoothing=0.1).numpy()
    assert smoothed[0].tolist() == pytest.approx([0.025, 0.025, 0.925, 0.025])
    mixed = mixup_target(target, 4, lam=0.3, smoothing=0.1).numpy()
    # Row 0 mixes label 2 (weight 0.3) with the reversed batch's label 1 (weight 0.7).
    assert mixed[0].tolist() == pytest.approx([0.025, 0.025 + 0.7 * 0.9, 0.025 + 0.3 * 0.9, 0.025])
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, rtol=1e-6)


def test_mixup_blends_with_reversed_batch_and_matching_targets():
    x, y = _batch()
    mixer = Mixup(mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0, num_classes=4, seed=0)
    mixed, soft = mixer(x, y)
    mixed, soft = mixed.numpy(), soft.numpy()
    values = np.arange(1, 7, dtype=np.float64)
    lam = (mixed[0, 0, 0, 0] - values[5]) / (values[0] - values[5])
    assert 0 < lam < 1
    np.testing.assert_allclose(mixed[:, 0, 0, 0], lam * values + (1 - lam) * values[::-1], rtol=1e-5)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    assert soft[0, 0] == pytest.approx(lam, rel=1e-5) and soft[0, 1] == pytest.approx(1 - lam, rel=1e-5)
    again = Mixup(mixup_alpha=0.8, label_smoothing=0.0, num_classes=4, seed=0)(x, y)[0].numpy()
    np.testing.assert_array_equal(again, mixed)


def test_cutmix_pastes_a_box_and_lam_is_the_kept_area():
    x, y = _batch(hw=20)
    for seed in range(5):
        mixer = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=4, seed=seed)
        mixed, soft = (t.numpy() for t in mixer(x, y))
        pasted = mixed[0, 0] == 6.0
        assert np.all((mixed[0, 0] == 1.0) | pasted)
        lam = 1.0 - pasted.mean()
        # Smoothed: label weights are 0.025 + 0.9 * (lam or 1 - lam).
        assert soft[0, 0] == pytest.approx(0.025 + 0.9 * lam, abs=1e-6)
        assert soft[0, 1] == pytest.approx(0.025 + 0.9 * (1 - lam), abs=1e-6)
        if pasted.any():
            rows, cols = np.nonzero(pasted)
            assert pasted.sum() == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)


def test_cutmix_minmax_box_sides():
    x, y = _batch(hw=40)
    for seed in range(5):
        mixed = Mixup(cutmix_minmax=(0.25, 0.5), mixup_alpha=0.0, num_classes=4, seed=seed)(x, y)[0].numpy()
        rows, cols = np.nonzero(mixed[0, 0] == 6.0)
        assert 10 <= np.ptp(rows) + 1 < 20 and 10 <= np.ptp(cols) + 1 < 20


def test_switching_between_mixup_and_cutmix():
    x, y = _batch()
    kinds = set()
    for seed in range(20):
        mixed = Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.5, num_classes=4, seed=seed)(x, y)[0].numpy()
        kinds.add("cutmix" if set(np.unique(mixed[0])) <= {1.0, 6.0} else "mixup")
    assert kinds == {"cutmix", "mixup"}


def test_probability_zero_and_disabled_leave_images_alone():
    x, y = _batch()
    for mixer in (Mixup(prob=0.0, num_classes=4, label_smoothing=0.1), Mixup(num_classes=4, label_smoothing=0.1)):
        if mixer.mix_prob > 0:
            mixer.mixup_enabled = False
        mixed, soft = mixer(x, y)
        np.testing.assert_array_equal(mixed.numpy(), x.numpy())
        np.testing.assert_allclose(soft.numpy(), mixup_target(y, 4, 1.0, 0.1).numpy())


def test_bad_arguments():
    with pytest.raises(ValueError, match="only 'batch'"):
        Mixup(mode="pair")
    with pytest.raises(ValueError, match="mixup_alpha > 0 or cutmix_alpha > 0"):
        Mixup(mixup_alpha=0.0, cutmix_alpha=0.0)
    with pytest.raises(ValueError, match="cutmix_minmax"):
        Mixup(cutmix_minmax=(0.5, 0.2))
