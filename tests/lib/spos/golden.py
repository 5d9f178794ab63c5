"""Deterministic weights and input for the SPOS golden-logits test (tests/fixtures/spos/README.md).

Everything is drawn from numpy generators seeded here, in state-dict order, so the same weights
come back on any machine: the fixture's logits were computed by the official PyTorch networks on
exactly these weights and this input.
"""
from __future__ import annotations

import numpy as np
import paddle

# Two supernet paths whose stride-2 layers (0, 4, 8, 16) between them use every choice.
SUPERNET_PATHS = (
    (2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3),  # the released arch
    (1, 3, 0, 2, 0, 1, 3, 2, 3, 0, 1, 2, 0, 3, 2, 1, 1, 0, 3, 2),
)
INPUT_SEED = 20
WEIGHT_SEED = 15


def golden_input() -> np.ndarray:
    """One 224 px image, float32 [1, 3, 224, 224]."""
    return np.random.default_rng(INPUT_SEED).standard_normal((1, 3, 224, 224)).astype(np.float32)


def fill_golden_weights(model: paddle.nn.Layer, seed: int = WEIGHT_SEED) -> None:
    """Overwrite every state entry of an SPOS network with seeded values of a healthy scale:
    convolutions He-normal, Linear normal(0, 1/sqrt(in)), batch-norm statistics and affine
    parameters near (0, 1), so activations neither vanish nor explode through the 20 layers."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, value in model.state_dict().items():
        shape = list(value.shape)
        leaf = name.rpartition(".")[2]
        if leaf == "_mean":
            array = rng.normal(0.0, 0.2, shape)
        elif leaf == "_variance":
            array = rng.uniform(0.5, 2.0, shape)
        elif len(shape) == 4:  # conv [out, in/groups, k, k]
            array = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        elif len(shape) == 2:  # Linear, Paddle layout [in, out]
            array = rng.normal(0.0, 1.0 / np.sqrt(shape[0]), shape)
        elif leaf == "weight":  # batch-norm scale
            array = rng.uniform(0.5, 1.5, shape)
        else:  # batch-norm shift
            array = rng.normal(0.0, 0.1, shape)
        state[name] = array.astype(np.float32)
    model.set_state_dict(state)
