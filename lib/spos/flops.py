"""FLOPs of SPOS paths as the official search counts them.

The official search measures multiply-accumulates of convolutions (k*k*cin/groups*cout*H*W) and of
the classifier at 224 px; batch norm, ReLU, pooling and the channel shuffle cost nothing. A path's
FLOPs are the shared stem and head plus one table entry per layer, so the table is computed once
from ``lib.spos.space`` and looked up (the evolution and the FLOPs-window sampler call this often).
"""
from __future__ import annotations

import functools
from typing import Sequence, Tuple

from lib.spos.space import (NUM_CHOICES, OFFICIAL_WIDTHS, SEARCH_RESOLUTION, Widths, block_layout,
                            head_layout, layer_specs, stem_layout, validate_arch)

__all__ = ["layer_flops_table", "fixed_flops", "arch_flops"]


@functools.lru_cache(maxsize=None)
def layer_flops_table(widths: Widths = OFFICIAL_WIDTHS) -> Tuple[Tuple[int, ...], ...]:
    """``table[layer][choice]``: FLOPs of that block at 224 px."""
    table = []
    for spec in layer_specs(widths):
        row = []
        for choice in range(NUM_CHOICES):
            main, proj = block_layout(choice, spec.in_chs, spec.out_chs, spec.stride)
            total = 0
            for branch in (main, proj):
                size = spec.input_size
                for conv in branch:
                    total += conv.flops(size)
                    size = conv.output_size(size)
            row.append(total)
        table.append(tuple(row))
    return tuple(table)


@functools.lru_cache(maxsize=None)
def fixed_flops(num_classes: int = 1000, widths: Widths = OFFICIAL_WIDTHS) -> int:
    """FLOPs every path shares: the stem, the 1x1 head convolution and the classifier."""
    stem, head = stem_layout(widths=widths), head_layout(widths)
    head_input = layer_specs(widths)[-1].input_size
    return stem.flops(SEARCH_RESOLUTION) + head.flops(head_input) + widths.head_channels * num_classes


def arch_flops(arch: Sequence[int], num_classes: int = 1000, widths: Widths = OFFICIAL_WIDTHS) -> int:
    """FLOPs of the path ``arch`` (20 choices in 0..3) at 224 px, e.g. 322,918,720 for the released
    arch of the official network (``widths``: a narrower one's, ``lib.spos.space.Widths``)."""
    table = layer_flops_table(widths)
    return fixed_flops(num_classes, widths) + sum(row[c] for row, c in zip(table, validate_arch(arch)))
