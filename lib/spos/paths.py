"""Path spaces for one-shot search, and the path sampler of supernet training.

A ``PathSpace`` is what the evolution and the sampler need to know of a supernet: a path is a tuple
of choice indices ("genes"), one per layer; each layer has its number of choices; a FLOPs function
prices a path; ``decode`` turns genes into the arch the network takes (a tuple for SPOS, nested
per-stage lists for Cream, see ``lib.spos.cream``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from lib.spos.flops import arch_flops
from lib.spos.space import NUM_CHOICES, NUM_LAYERS, OFFICIAL_WIDTHS, Widths, validate_arch

__all__ = ["Genes", "PathSpace", "UniformPathSampler", "spos_path_space"]

Genes = Tuple[int, ...]


@dataclass(frozen=True)
class PathSpace:
    """Paths of ``len(num_choices)`` layers; layer ``i`` takes a choice in ``range(num_choices[i])``.

    ``flops(genes)`` prices a path (any unit; limits are given in the same unit). ``decode(genes)``
    is the arch a network and a fitness function take; ``encode`` is its inverse (and validates).
    """

    num_choices: Tuple[int, ...]
    flops: Callable[[Genes], float]
    decode: Callable[[Genes], Any] = tuple
    encode: Callable[[Any], Genes] = tuple

    def __post_init__(self) -> None:
        if not self.num_choices or min(self.num_choices) < 1:
            raise ValueError(f"a path space needs at least one layer and one choice per layer, "
                             f"got num_choices={self.num_choices}")

    @property
    def num_layers(self) -> int:
        return len(self.num_choices)

    def random_path(self, rng: np.random.Generator) -> Genes:
        """Each layer's choice uniform."""
        return tuple(rng.integers(0, self.num_choices).tolist())

    def mutate(self, parent: Genes, prob: float, rng: np.random.Generator) -> Genes:
        """Each gene independently, with probability ``prob``, is redrawn uniformly from all of its
        layer's choices (so it may come back unchanged), as in the official search."""
        redraw = rng.random(self.num_layers) < prob
        fresh = rng.integers(0, self.num_choices)
        return tuple(int(new) if hit else int(old) for old, new, hit in zip(parent, fresh, redraw))

    def crossover(self, parent_a: Genes, parent_b: Genes, rng: np.random.Generator) -> Genes:
        """Each gene from ``parent_a`` or ``parent_b`` with equal probability."""
        from_a = rng.random(self.num_layers) < 0.5
        return tuple(int(a) if pick else int(b) for a, b, pick in zip(parent_a, parent_b, from_a))


def spos_path_space(widths: Widths = OFFICIAL_WIDTHS, num_classes: int = 1000,
                    flops_unit: float = 1.0) -> PathSpace:
    """SPOS's space: 20 layers of 4 choices, FLOPs as the official search counts them (divided by
    ``flops_unit``: 1e6 prices paths in MFLOPs) for a network of ``widths`` and ``num_classes``."""
    def flops(genes: Genes) -> float:
        return arch_flops(genes, num_classes, widths) / flops_unit

    return PathSpace((NUM_CHOICES,) * NUM_LAYERS, flops, decode=tuple, encode=validate_arch)


class UniformPathSampler:
    """Paths for supernet training: uniform, or uniform within a FLOPs window.

    With ``flops_range=(lower, upper)`` and ``bin_width`` it follows the official sampler: a bin
    ``[lower + k * bin_width, lower + (k + 1) * bin_width]`` is picked uniformly, then uniform paths
    are drawn until one falls in it; after ``max_tries`` misses the last draw is used (the official
    falls back to a uniform path too) and ``misses`` counts it. Every rank of a distributed run must
    seed it alike (they train the same path); its state goes into checkpoints.
    """

    def __init__(self, space: PathSpace, flops_range: Optional[Sequence[float]] = None,
                 bin_width: Optional[float] = None, max_tries: int = 500, seed: int = 0) -> None:
        self.space = space
        self.bins: Tuple[Tuple[float, float], ...] = ()
        if flops_range is not None:
            lower, upper = (float(v) for v in flops_range)
            width = float(bin_width) if bin_width is not None else upper - lower
            if not lower < upper or width <= 0:
                raise ValueError(f"FLOPs window {list(flops_range)} with bin width {bin_width} is empty: "
                                 f"give lower < upper and a positive bin width")
            count = math.ceil((upper - lower) / width - 1e-9)
            self.bins = tuple((lower + k * width, min(lower + (k + 1) * width, upper)) for k in range(count))
        if max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {max_tries}")
        self.max_tries = int(max_tries)
        self.misses = 0
        self.rng = np.random.default_rng(seed)

    def sample(self) -> Genes:
        if not self.bins:
            return self.space.random_path(self.rng)
        lower, upper = self.bins[int(self.rng.integers(len(self.bins)))]
        for _ in range(self.max_tries):
            path = self.space.random_path(self.rng)
            if lower <= self.space.flops(path) <= upper:
                return path
        self.misses += 1
        return path

    def state_dict(self) -> Dict[str, Any]:
        """Plain data (JSON-serialisable): the generator's state and the miss count."""
        return {"bit_generator": self.rng.bit_generator.state, "misses": self.misses}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["bit_generator"]
        self.misses = int(state["misses"])
