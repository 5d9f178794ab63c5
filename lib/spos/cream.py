"""Cream's supernet as a ``PathSpace``, so SPOS's evolution searches it too.

A Cream path is ``[[0], stage1, ..., stage5, [0]]`` with one choice per layer of the searched
stages (``lib.models.space.CHOICES``); its genes are the searched layers' choices in order.
Evolved paths never skip layers (-1), as Cream's own path sampler never does.
"""
from __future__ import annotations

from typing import Any, Callable, List, Sequence

from lib.models.space import CHOICES, SEARCHED_STAGES
from lib.spos.paths import Genes, PathSpace

__all__ = ["cream_path_space"]

ArchList = List[List[int]]


def cream_path_space(sta_num: Sequence[int], flops: Callable[[ArchList], float]) -> PathSpace:
    """The path space of a Cream supernet with ``sta_num[i]`` layers in searched stage ``i + 1``.

    ``flops`` prices a Cream arch, e.g. ``lib.search.FlopsEst(supernet).get_flops`` (MFLOPs: give
    the evolution's FLOPs limit in MFLOPs too).
    """
    sta_num = [int(n) for n in sta_num]
    if len(sta_num) != len(SEARCHED_STAGES) or min(sta_num) < 1:
        raise ValueError(f"sta_num {sta_num} must hold {len(SEARCHED_STAGES)} positive layer counts")

    def decode(genes: Genes) -> ArchList:
        stages, start = [], 0
        for count in sta_num:
            stages.append([int(g) for g in genes[start:start + count]])
            start += count
        return [[0]] + stages + [[0]]

    def encode(arch: Sequence[Sequence[Any]]) -> Genes:
        stages = [list(stage) for stage in arch]
        shape_ok = (len(stages) == len(SEARCHED_STAGES) + 2 and stages[0] == [0] and stages[-1] == [0]
                    and [len(s) for s in stages[1:-1]] == sta_num)
        genes = tuple(int(c) for s in stages[1:-1] for c in s) if shape_ok else ()
        if not shape_ok or any(not 0 <= g < len(CHOICES) for g in genes):
            raise ValueError(f"{stages} is not a path of the Cream supernet with sta_num {sta_num}: expected "
                             f"[[0], {sta_num} layers of choices 0..{len(CHOICES) - 1}, [0]]")
        return genes

    return PathSpace((len(CHOICES),) * sum(sta_num), lambda genes: flops(decode(genes)),
                     decode=decode, encode=encode)
