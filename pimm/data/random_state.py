"""The random generators that data augmentation draws from.

Augmentation does not use the interpreter-wide ``random`` / ``np.random`` state: with
``num_workers=0`` Paddle decodes batches on a background thread of the training process, and a
shared global generator would interleave augmentation draws with whatever the training loop
samples (Cream samples paths with numpy), making runs depend on thread timing. Transforms draw from
an :class:`AugRandom` instead -- one per process unless a transform is given its own -- and the
loader reseeds it per epoch and worker.
"""
import random
from typing import Optional, Sequence, Union

import numpy as np

SeedLike = Union[None, int, Sequence[int]]


class AugRandom:
    """A Python ``random.Random`` (``.py``) and a numpy ``Generator`` (``.np``) seeded together."""

    def __init__(self, seed: SeedLike = None) -> None:
        self.py = random.Random()
        self.np = np.random.default_rng()
        self.seed(seed)

    def seed(self, seed: SeedLike = None) -> None:
        """Reseed both generators; ``seed`` may be a sequence of ints (e.g. seed, rank, epoch, worker)."""
        entropy = np.random.SeedSequence(seed)
        py_state, np_state = entropy.spawn(2)
        self.py.seed(int(py_state.generate_state(1, np.uint64)[0]))
        self.np = np.random.default_rng(np_state)


_process_rng: Optional[AugRandom] = None


def augmentation_rng() -> AugRandom:
    """The process-wide generator used by transforms that were not given their own."""
    global _process_rng
    if _process_rng is None:
        _process_rng = AugRandom()
    return _process_rng


def seed_augmentation(seed: SeedLike) -> None:
    """Make the augmentation of this process deterministic (the loader calls this per epoch/worker)."""
    augmentation_rng().seed(seed)


def resolve_rng(rng: Optional[AugRandom]) -> AugRandom:
    return rng if rng is not None else augmentation_rng()
