"""FLOPs and parameters of supernet paths, from a per-choice lookup table.

The reference measures its supernet with ptflops 0.6 at 224 px, and its search (the FLOPs limits,
the sizing of the supernet) is defined by those figures, so they are reproduced here exactly:
ptflops counts convolutions (``out_HW * k^2 * Cin * Cout / groups``, plus ``Cout * out_HW`` for a
bias), batch norm (2 per element), Linear (``in * out``) like thop, but ReLU-family activations
cost one per output element and every pooling one per *input* element; Swish, gates, products
and sums cost nothing.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Sequence, Tuple

import paddle
from paddle import nn

from pimm.utils.profile import PTFLOPS_RULES, profile
from lib.models.space import SEARCH_RESOLUTION

__all__ = ["FlopsEst", "PTFLOPS_RULES"]


def _count(layer: nn.Layer, x: paddle.Tensor) -> Tuple[float, float]:
    """(MFLOPs, Mparams) of ``layer`` on ``x``, by ptflops' rules."""
    flops, params = profile(layer, inputs=x, custom_ops=PTFLOPS_RULES)
    return flops / 1e6, params / 1e6


@contextlib.contextmanager
def _inference(model: nn.Layer) -> Iterator[None]:
    """Eval mode without gradients, restoring every sublayer's training flag afterwards."""
    flags = [(layer, layer.training) for layer in model.sublayers(include_self=True)]
    model.eval()
    try:
        with paddle.no_grad():
            yield
    finally:
        for layer, training in flags:
            layer.training = training


class FlopsEst:
    """Per-choice FLOPs (M) and parameters (M) of a supernet, measured once at 224 px.

    ``flops_dict[stage][layer][choice]`` / ``params_dict[...]`` hold each candidate block;
    ``flops_fixed`` / ``params_fixed`` the parts every path shares: conv_stem, the global pool and
    conv_head (the stem's batch norm and the classifier are left out, as in the reference).
    Each layer's candidates are measured on the output of the previous layer's last candidate
    (all candidates of a layer have the same output shape).
    """

    def __init__(self, model: nn.Layer, resolution: int = SEARCH_RESOLUTION) -> None:
        self.flops_dict: Dict[int, Dict[int, Dict[int, float]]] = {}
        self.params_dict: Dict[int, Dict[int, Dict[int, float]]] = {}
        with _inference(model):
            x = paddle.zeros([1, 3, resolution, resolution])
            self.flops_fixed, self.params_fixed = _count(model.conv_stem, x)
            x = model.conv_stem(x)
            for stage, layers in enumerate(model.blocks):
                self.flops_dict[stage], self.params_dict[stage] = {}, {}
                for index, candidates in enumerate(layers):
                    counts = [_count(block, x) for block in candidates]
                    self.flops_dict[stage][index] = {c: flops for c, (flops, _) in enumerate(counts)}
                    self.params_dict[stage][index] = {c: params for c, (_, params) in enumerate(counts)}
                    x = candidates[len(candidates) - 1](x)
            for layer in (model.global_pool, model.conv_head):
                flops, params = _count(layer, x)
                self.flops_fixed += flops
                self.params_fixed += params
                x = layer(x)

    @staticmethod
    def _path_sum(table: Dict[int, Dict[int, Dict[int, float]]], arch: Sequence[Sequence[int]]) -> float:
        total = 0.0
        for stage, choices in enumerate(arch):
            for layer, choice in enumerate(choices):
                if choice != -1:
                    total += table[stage][layer][choice]
        return total

    def get_flops(self, arch: Sequence[Sequence[int]]) -> float:
        """MFLOPs of a path (``-1`` skips a layer), at the table's resolution."""
        return self._path_sum(self.flops_dict, arch) + self.flops_fixed

    def get_params(self, arch: Sequence[Sequence[int]]) -> float:
        """Millions of parameters of a path, classifier and stem batch norm excluded."""
        return self._path_sum(self.params_dict, arch) + self.params_fixed
