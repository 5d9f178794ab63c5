"""Deterministic weights and inputs of the golden DARTS fixtures (tests/fixtures/darts)."""
import os
import zlib

import numpy as np
import paddle


def fill_deterministic(model: paddle.nn.Layer, seed: int = 0) -> None:
    """Give every state entry of ``model`` values that depend only on (seed, entry name) and keep
    activations in range: weights uniform in +-sqrt(3 / fan_in), batch-norm scales near 1, running
    variances in [0.5, 1.5]. The golden fixtures of tests/fixtures/darts were made from these."""
    for name, tensor in model.state_dict().items():
        rng = np.random.RandomState((zlib.crc32(name.encode()) + seed) % 2**32)
        shape = tuple(tensor.shape)
        leaf = name.rpartition(".")[2]
        if leaf == "_variance":
            value = rng.uniform(0.5, 1.5, shape)
        elif leaf == "_mean" or (leaf == "bias" and len(shape) == 1):
            value = rng.normal(0.0, 0.1, shape)
        elif name.startswith("alphas_"):
            value = rng.normal(0.0, 0.5, shape)
        elif len(shape) == 1:  # batch-norm scale
            value = rng.uniform(0.5, 1.5, shape)
        else:
            # conv [out, in/groups, kh, kw]; Paddle Linear [in, out]
            fan_in = shape[0] if len(shape) == 2 else int(np.prod(shape[1:]))
            bound = np.sqrt(3.0 / fan_in)
            value = rng.uniform(-bound, bound, shape)
        tensor.set_value(value.astype(np.float32))


FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "fixtures", "darts", "reference_outputs.npz")


def reference_input(shape, seed: int = 1) -> np.ndarray:
    """The inputs the golden outputs were computed on."""
    return np.random.RandomState(seed).normal(0.0, 1.0, shape).astype(np.float32)


def load_reference() -> dict:
    """Outputs of the official P-DARTS code (tests/fixtures/darts/README.md)."""
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}
