"""Random erasing (Zhong et al., 2017) on normalised images, with timm's area/aspect/count rules."""
import math
from typing import Optional, Tuple

import numpy as np

from .random_state import AugRandom, resolve_rng

ERASE_MODES = ("const", "rand", "pixel")


class RandomErasing:
    """Erase random rectangles of a normalised image ``[C, H, W]`` or batch ``[N, C, H, W]``.

    Works in place on numpy arrays (the loader erases collated batches in its workers) and on
    Paddle tensors (e.g. a batch already on the GPU), and returns its input. With probability
    ``probability`` an image gets between ``min_count`` and ``max_count`` boxes; each box covers a
    fraction of the image drawn from
    ``[min_area, max_area]`` divided by the count, with a log-uniform aspect ratio in
    ``[min_aspect, max_aspect]`` (default ``1 / min_aspect``); ten tries to fit each box.
    Fill by ``mode``: ``'const'`` zeros (the mean colour after normalisation), ``'rand'`` one normal
    colour per box, ``'pixel'`` per-pixel standard normal noise.
    """

    def __init__(
        self,
        probability: float = 0.5,
        min_area: float = 0.02,
        max_area: float = 1 / 3,
        min_aspect: float = 0.3,
        max_aspect: Optional[float] = None,
        mode: str = "const",
        min_count: int = 1,
        max_count: Optional[int] = None,
        rng: Optional[AugRandom] = None,
    ) -> None:
        mode = (mode or "const").lower()
        if mode not in ERASE_MODES:
            raise ValueError(f"unknown random erasing mode {mode!r}: use one of {ERASE_MODES}")
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"random erasing probability must be in [0, 1], got {probability}")
        self.probability = probability
        self.min_area = min_area
        self.max_area = max_area
        self.log_aspect = (math.log(min_aspect), math.log(max_aspect or 1.0 / min_aspect))
        self.mode = mode
        self.min_count = min_count
        self.max_count = max_count or min_count
        if self.max_count < self.min_count:
            raise ValueError(f"random erasing max_count {max_count} is below min_count {min_count}")
        self.rng = rng

    def _fill(self, rng: AugRandom, chans: int, h: int, w: int) -> np.ndarray:
        if self.mode == "pixel":
            return rng.np.standard_normal((chans, h, w), dtype=np.float32)
        if self.mode == "rand":
            return rng.np.standard_normal((chans, 1, 1), dtype=np.float32)
        return np.zeros((chans, 1, 1), dtype=np.float32)

    def _erase(self, images, prefix: Tuple[int, ...], shape, rng: AugRandom) -> None:
        chans, height, width = shape
        if rng.py.random() >= self.probability:
            return
        count = self.min_count if self.min_count == self.max_count else rng.py.randint(self.min_count, self.max_count)
        area = height * width
        for _ in range(count):
            for _attempt in range(10):
                target_area = rng.py.uniform(self.min_area, self.max_area) * area / count
                aspect = math.exp(rng.py.uniform(*self.log_aspect))
                h = int(round(math.sqrt(target_area * aspect)))
                w = int(round(math.sqrt(target_area / aspect)))
                if w < width and h < height:
                    top = rng.py.randint(0, height - h)
                    left = rng.py.randint(0, width - w)
                    images[prefix + (slice(None), slice(top, top + h), slice(left, left + w))] = self._fill(
                        rng, chans, h, w
                    )
                    break

    def __call__(self, images):
        rng = resolve_rng(self.rng)
        shape = tuple(images.shape)
        if len(shape) == 3:
            self._erase(images, (), shape, rng)
        elif len(shape) == 4:
            for index in range(shape[0]):
                self._erase(images, (index,), shape[1:], rng)
        else:
            raise ValueError(f"random erasing expects [C, H, W] or [N, C, H, W], got shape {shape}")
        return images

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(probability={self.probability}, mode={self.mode!r}, "
            f"count=({self.min_count}, {self.max_count}))"
        )
