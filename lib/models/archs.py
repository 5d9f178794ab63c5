"""The searched Cream architectures: the one table that retrain, test, export, FLOPs reports and the
docs read from.

An arch list has seven stages. Stage 0 (the depthwise-separable block) and stage 6 (the final 1x1
ConvBnAct) have no choice and are written ``[0]``; stages 1-5 hold one search-space choice index per
layer (``lib.models.space.CHOICES``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from lib.models.space import CHOICES

__all__ = ["CreamArch", "CREAM_ARCHS", "released_models_table", "resolve_arch", "trained_network",
           "validate_arch"]

ArchList = List[List[int]]


@dataclass(frozen=True)
class CreamArch:
    selection: int
    arch: Tuple[Tuple[int, ...], ...]
    image_size: int
    mflops: float  # thop 0.0.31 multiply-adds at image_size, as the paper reports them
    mparams: float
    top1: float  # published ImageNet accuracy (%)
    top5: float

    def arch_list(self) -> ArchList:
        return [list(stage) for stage in self.arch]


def _entry(selection, arch, image_size, mflops, mparams, top1, top5) -> CreamArch:
    return CreamArch(selection, tuple(tuple(s) for s in arch), image_size, mflops, mparams, top1, top5)


CREAM_ARCHS: Dict[int, CreamArch] = {
    a.selection: a
    for a in (
        _entry(14, [[0], [3], [3, 3], [3, 3], [3], [3], [0]], 64, 13.849, 2.673, 53.8, 77.2),
        _entry(43, [[0], [3], [3, 1], [3, 1], [3, 3, 3], [3, 3], [0]], 96, 42.414, 4.399, 66.3, 86.7),
        _entry(114, [[0], [3], [3, 3], [3, 3], [3, 3, 3], [3, 3], [0]], 160, 114.488, 4.410, 72.8, 90.8),
        _entry(287, [[0], [3], [3, 3], [3, 1, 3], [3, 3, 3, 3], [3, 3, 3], [0]], 224, 287.195, 6.044,
               77.6, 93.3),
        _entry(481, [[0], [3, 4, 3, 1], [3, 2, 3, 0], [3, 3, 3, 1, 1], [3, 3, 3, 3], [3, 3, 3, 3], [0]],
               224, 481.599, 7.713, 79.2, 94.2),
        _entry(604, [[0], [3, 3, 2, 3, 3], [3, 2, 3, 2, 3], [3, 2, 3, 2, 3], [3, 3, 2, 2, 3, 3],
                     [3, 3, 2, 3, 3, 3], [0]], 224, 604.340, 9.696, 80.0, 94.7),
    )
}


def released_models_table() -> str:
    """The released networks as a Markdown table (README.md shows exactly this text)."""
    rows = ["| selection | model name | image size | MFLOPs | Mparams | top-1 % | top-5 % | arch |",
            "|---:|---|---:|---:|---:|---:|---:|---|"]
    rows += [f"| {a.selection} | `cream_{a.selection}` | {a.image_size} | {a.mflops:.3f} | {a.mparams:.3f} | "
             f"{a.top1:.1f} | {a.top5:.1f} | `{a.arch_list()}` |" for a in CREAM_ARCHS.values()]
    return "\n".join(rows)


def validate_arch(arch: Sequence[Sequence[int]]) -> ArchList:
    """Check an arch list's shape and choice indices; return it as a list of lists."""
    arch = [list(stage) for stage in arch]
    problems = []
    if len(arch) != 7:
        problems.append(f"it has {len(arch)} stages, expected 7")
    else:
        if arch[0] != [0] or arch[-1] != [0]:
            problems.append("the first and last stages must be [0]")
        for i, stage in enumerate(arch[1:-1], start=1):
            if not stage:
                problems.append(f"stage {i} is empty (every searched stage has at least one layer)")
            bad = [c for c in stage if not (isinstance(c, int) and 0 <= c < len(CHOICES))]
            if bad:
                problems.append(f"stage {i} has choice indices {bad} outside 0..{len(CHOICES) - 1}")
    if problems:
        raise ValueError(
            f"invalid Cream arch {arch}: " + "; ".join(problems)
            + ". Expected [[0], [c, ...] x5, [0]], e.g. " + str(CREAM_ARCHS[14].arch_list())
        )
    return arch


def resolve_arch(selection_or_arch: Union[int, Sequence[Sequence[int]]]) -> Tuple[ArchList, int]:
    """A released selection (14, 43, ...) or an arch list → (arch list, image size).

    An explicit arch list has no published image size: 224 is returned, the search's resolution.
    """
    if isinstance(selection_or_arch, int):
        if selection_or_arch not in CREAM_ARCHS:
            raise ValueError(
                f"unknown Cream selection {selection_or_arch}; released ones are "
                f"{sorted(CREAM_ARCHS)}. To use a searched path, set NET.SELECTION -1 and "
                "NET.INPUT_ARCH to its arch list."
            )
        entry = CREAM_ARCHS[selection_or_arch]
        return entry.arch_list(), entry.image_size
    return validate_arch(selection_or_arch), 224


def trained_network(args: Any) -> Optional[Union[int, ArchList]]:
    """The network named by the run config a checkpoint stores (its ``args`` dict): a released
    ``NET.SELECTION``, or ``NET.INPUT_ARCH`` when the selection is -1; None when it names neither."""
    net = args.get("NET") if isinstance(args, dict) else None
    if not isinstance(net, dict):
        return None
    selection = net.get("SELECTION")
    if selection == -1 and net.get("INPUT_ARCH"):
        return net["INPUT_ARCH"]
    return selection if isinstance(selection, int) and selection in CREAM_ARCHS else None
