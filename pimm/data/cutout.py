"""Cutout (DeVries & Taylor, 2017) on normalised images, as the DARTS family trains CIFAR."""
from typing import Optional

from .random_state import AugRandom, resolve_rng


class Cutout:
    """Zero a ``length`` x ``length`` square (clipped at the borders) centred on a uniformly drawn
    pixel of every image: ``[C, H, W]`` or ``[N, C, H, W]``, numpy arrays or Paddle tensors,
    in place (and returned). Runs after normalisation, so the square takes the mean colour."""

    def __init__(self, length: int = 16, rng: Optional[AugRandom] = None) -> None:
        if length < 1:
            raise ValueError(f"cutout length must be >= 1, got {length}")
        self.length = length
        self.rng = rng

    def _cut(self, images, prefix: tuple, height: int, width: int, rng: AugRandom) -> None:
        y, x = int(rng.np.integers(height)), int(rng.np.integers(width))
        half = self.length // 2
        top, bottom = max(y - half, 0), min(y + half, height)
        left, right = max(x - half, 0), min(x + half, width)
        if bottom > top and right > left:  # length 1 cuts nothing, as in the reference
            images[prefix + (slice(None), slice(top, bottom), slice(left, right))] = 0

    def __call__(self, images):
        rng = resolve_rng(self.rng)
        shape = tuple(images.shape)
        if len(shape) == 3:
            self._cut(images, (), shape[1], shape[2], rng)
        elif len(shape) == 4:
            for index in range(shape[0]):
                self._cut(images, (index,), shape[2], shape[3], rng)
        else:
            raise ValueError(f"cutout expects [C, H, W] or [N, C, H, W], got shape {shape}")
        return images

    def __repr__(self) -> str:
        return f"{type(self).__name__}(length={self.length})"
