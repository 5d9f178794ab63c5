"""Mixup and CutMix on batches of Paddle tensors, with one-hot / label-smoothed soft targets."""
from typing import Optional, Tuple

import numpy as np
import paddle
import paddle.nn.functional as F


def one_hot(target: paddle.Tensor, num_classes: int, on_value: float = 1.0, off_value: float = 0.0) -> paddle.Tensor:
    """``[B]`` integer labels -> float32 ``[B, num_classes]`` with ``on_value`` at the label."""
    hot = F.one_hot(target.reshape([-1]).astype("int64"), num_classes).astype("float32")
    return hot * (on_value - off_value) + off_value


def mixup_target(
    target: paddle.Tensor, num_classes: int, lam: float = 1.0, smoothing: float = 0.0
) -> paddle.Tensor:
    """Soft targets for a batch mixed with its reverse: ``lam * y + (1 - lam) * y.flip(0)``.

    Each one-hot row is label-smoothed first: the label gets ``1 - smoothing + smoothing / K``,
    every other class ``smoothing / K``.
    """
    off_value = smoothing / num_classes
    on_value = 1.0 - smoothing + off_value
    y = one_hot(target, num_classes, on_value, off_value)
    if lam == 1.0:
        return y
    return y * lam + y.flip([0]) * (1.0 - lam)


def rand_bbox(
    img_shape: Tuple[int, ...], lam: float, rng, margin: float = 0.0
) -> Tuple[int, int, int, int]:
    """A box covering about ``1 - lam`` of the image, centred uniformly: (top, bottom, left, right)."""
    height, width = img_shape[-2:]
    ratio = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    margin_y, margin_x = int(margin * cut_h), int(margin * cut_w)
    cy = int(rng.randint(margin_y, height - margin_y))
    cx = int(rng.randint(margin_x, width - margin_x))
    top, bottom = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
    left, right = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
    return int(top), int(bottom), int(left), int(right)


def rand_bbox_minmax(img_shape: Tuple[int, ...], minmax: Tuple[float, float], rng) -> Tuple[int, int, int, int]:
    """A box whose sides are fractions of the image drawn from ``[min, max)``, placed uniformly."""
    height, width = img_shape[-2:]
    cut_h = int(rng.randint(int(height * minmax[0]), int(height * minmax[1])))
    cut_w = int(rng.randint(int(width * minmax[0]), int(width * minmax[1])))
    top = int(rng.randint(0, height - cut_h))
    left = int(rng.randint(0, width - cut_w))
    return top, top + cut_h, left, left + cut_w


class Mixup:
    """Mix each batch with its reverse by Mixup (blend) or CutMix (paste a box), per batch.

    With probability ``prob`` a batch is mixed; when both alphas are positive CutMix is chosen with
    probability ``switch_prob``. Mixup blends with ``lam ~ Beta(mixup_alpha, mixup_alpha)``. CutMix
    pastes a box from the reversed batch, sized by ``lam ~ Beta(cutmix_alpha, cutmix_alpha)`` or, with
    ``cutmix_minmax``, by side fractions in that range; its ``lam`` is then corrected to the kept
    area when ``correct_lam`` (always with ``cutmix_minmax``). Targets are
    :func:`mixup_target` with ``label_smoothing``. Random draws come from numpy's global generator,
    or from a private one when ``seed`` is given.
    """

    def __init__(
        self,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 0.0,
        cutmix_minmax: Optional[Tuple[float, float]] = None,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        correct_lam: bool = True,
        label_smoothing: float = 0.1,
        num_classes: int = 1000,
        seed: Optional[int] = None,
    ) -> None:
        if mode != "batch":
            raise ValueError(f"Mixup mode {mode!r} is not supported: only 'batch' (one lam per batch)")
        if cutmix_minmax is not None:
            if len(cutmix_minmax) != 2 or not 0.0 <= cutmix_minmax[0] < cutmix_minmax[1] <= 1.0:
                raise ValueError(f"cutmix_minmax must be (min, max) fractions with min < max, got {cutmix_minmax}")
            # A box range alone asks for CutMix.
            cutmix_alpha = 1.0
        if mixup_alpha < 0 or cutmix_alpha < 0 or (mixup_alpha == 0 and cutmix_alpha == 0):
            raise ValueError(
                f"Mixup needs mixup_alpha > 0 or cutmix_alpha > 0 (got {mixup_alpha}, {cutmix_alpha})"
            )
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.cutmix_minmax = None if cutmix_minmax is None else tuple(cutmix_minmax)
        self.mix_prob = prob
        self.switch_prob = switch_prob
        self.mode = mode
        self.correct_lam = correct_lam
        self.label_smoothing = label_smoothing
        self.num_classes = num_classes
        self.mixup_enabled = True
        self.rng = np.random if seed is None else np.random.RandomState(seed)

    def sample_params(self) -> Tuple[float, bool]:
        """(lam, use_cutmix) for the next batch; lam 1 means no mixing."""
        if not self.mixup_enabled or self.rng.rand() >= self.mix_prob:
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = bool(self.rng.rand() < self.switch_prob)
        else:
            use_cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return float(self.rng.beta(alpha, alpha)), use_cutmix

    def cutmix_box(self, img_shape: Tuple[int, ...], lam: float) -> Tuple[Tuple[int, int, int, int], float]:
        """The pasted box and the lam that goes with it (the kept area when corrected)."""
        if self.cutmix_minmax is not None:
            box = rand_bbox_minmax(img_shape, self.cutmix_minmax, self.rng)
        else:
            box = rand_bbox(img_shape, lam, self.rng)
        if self.correct_lam or self.cutmix_minmax is not None:
            top, bottom, left, right = box
            lam = 1.0 - (bottom - top) * (right - left) / float(img_shape[-2] * img_shape[-1])
        return box, lam

    def mix_batch(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, float]:
        lam, use_cutmix = self.sample_params()
        if lam == 1.0:
            return x, 1.0
        if use_cutmix:
            (top, bottom, left, right), lam = self.cutmix_box(tuple(x.shape), lam)
            mixed = x.clone()
            if bottom > top and right > left:  # Paddle rejects assigning an empty slice
                mixed[:, :, top:bottom, left:right] = x.flip([0])[:, :, top:bottom, left:right]
            return mixed, lam
        return x * lam + x.flip([0]) * (1.0 - lam), lam

    def __call__(self, x: paddle.Tensor, target: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """(mixed images, float32 soft targets ``[B, num_classes]``).

        Image ``i`` is mixed with image ``B - 1 - i``; with an odd batch the middle one keeps itself.
        """
        mixed, lam = self.mix_batch(x)
        return mixed, mixup_target(target, self.num_classes, lam, self.label_smoothing)
