"""SPOS's search space: a ShuffleNetV2 backbone whose 20 layers each pick one of four blocks.

The geometry (stages, channels, strides) and each block's convolutions are written here once, as
data: ``lib.spos.blocks`` builds layers from ``block_layout`` and ``lib.spos.flops`` counts the
same convolutions, so the networks and the FLOPs table cannot drift apart. ``Widths`` scales the
channels (the official ones by default) for small demo networks of the same space.

Choices, in the order of the official supernet's parameter names (``features.<layer>.<choice>``):
0, 1, 2 are ShuffleNetV2 units with a 3x3, 5x5, 7x7 depthwise convolution, 3 is the Xception-style
unit (three depthwise 3x3 + pointwise rounds).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

__all__ = [
    "CHOICE_NAMES", "NUM_CHOICES", "NUM_LAYERS", "STAGE_REPEATS", "STAGE_CHANNELS", "STEM_CHANNELS",
    "HEAD_CHANNELS", "SEARCH_RESOLUTION", "RELEASED_ARCH", "Arch", "ConvSpec", "LayerSpec", "Widths",
    "OFFICIAL_WIDTHS", "layer_specs", "block_layout", "stem_layout", "head_layout", "validate_arch",
]

CHOICE_NAMES: Tuple[str, ...] = ("shufflenet_3x3", "shufflenet_5x5", "shufflenet_7x7", "xception_3x3")
NUM_CHOICES = len(CHOICE_NAMES)
STAGE_REPEATS: Tuple[int, ...] = (4, 4, 8, 4)
STAGE_CHANNELS: Tuple[int, ...] = (64, 160, 320, 640)
NUM_LAYERS = sum(STAGE_REPEATS)
STEM_CHANNELS = 16
HEAD_CHANNELS = 1024
SEARCH_RESOLUTION = 224  # the official FLOPs (and the 7x7 pool of its head) assume this input size
# The path the official search released (its stand-alone net: 323 MFLOPs, 3.56 M parameters).
RELEASED_ARCH: Tuple[int, ...] = (2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3)

Arch = Tuple[int, ...]
_SHUFFLE_KERNELS = (3, 5, 7)  # depthwise kernel of choices 0, 1, 2
_XCEPTION_KERNEL = 3


@dataclass(frozen=True)
class ConvSpec:
    """One bias-free convolution, always followed by batch norm, then ReLU when ``relu``."""

    in_chs: int
    out_chs: int
    kernel: int
    stride: int = 1
    depthwise: bool = False
    relu: bool = False

    def output_size(self, input_size: int) -> int:
        return (input_size - 1) // self.stride + 1  # padding kernel // 2, odd kernels

    def flops(self, input_size: int) -> int:
        """Multiply-accumulates on a square ``input_size`` map: k*k*cin/groups*cout*H_out*W_out."""
        per_output = self.kernel * self.kernel * (1 if self.depthwise else self.in_chs)
        return per_output * self.out_chs * self.output_size(input_size) ** 2


@dataclass(frozen=True)
class Widths:
    """The channel widths of an SPOS network: the stem's, each stage's, the 1x1 head's.

    The official network is ``Widths()``. Narrower ones (e.g. ``Widths((32, 64, 128, 256), 512)``)
    keep the space -- 20 layers, 4 choices, the same block layouts -- for quick runs on small
    data; FLOPs tables and networks built with them describe that narrower network.
    """

    stage_channels: Tuple[int, ...] = STAGE_CHANNELS
    head_channels: int = HEAD_CHANNELS
    stem_channels: int = STEM_CHANNELS

    def __post_init__(self) -> None:
        stages = tuple(int(c) for c in self.stage_channels)
        object.__setattr__(self, "stage_channels", stages)
        problems = []
        if len(stages) != len(STAGE_REPEATS):
            problems.append(f"{len(STAGE_REPEATS)} stage widths are needed, got {len(stages)}")
        if any(c % 2 for c in stages):
            problems.append("stage widths must be even (a block splits its channels in halves)")
        inputs = (int(self.stem_channels),) + stages[:-1]
        if any(out <= inp for inp, out in zip(inputs, stages)):
            # a stage's first block keeps its input width on the projection branch
            problems.append("each stage must be wider than its input (the stem's width for the first)")
        if min(int(self.stem_channels), int(self.head_channels)) < 1:
            problems.append("stem and head widths must be positive")
        if problems:
            raise ValueError(f"invalid SPOS widths stem {self.stem_channels}, stages {list(stages)}, "
                             f"head {self.head_channels}: " + "; ".join(problems))

    def record(self) -> dict:
        """The widths as an evolution.json records them (the stem's is fixed by the space)."""
        return {"stage_channels": list(self.stage_channels), "head_channels": int(self.head_channels)}


OFFICIAL_WIDTHS = Widths()


@dataclass(frozen=True)
class LayerSpec:
    """A choice layer: its input and output channels, stride, and input side at 224 px."""

    in_chs: int
    out_chs: int
    stride: int
    input_size: int


def layer_specs(widths: Widths = OFFICIAL_WIDTHS) -> Tuple[LayerSpec, ...]:
    """The 20 choice layers: each stage's first layer halves the map and changes the width."""
    specs = []
    in_chs, size = widths.stem_channels, stem_layout(widths=widths).output_size(SEARCH_RESOLUTION)
    for repeats, out_chs in zip(STAGE_REPEATS, widths.stage_channels):
        for index in range(repeats):
            stride = 2 if index == 0 else 1
            specs.append(LayerSpec(in_chs, out_chs, stride, size))
            in_chs, size = out_chs, (size - 1) // stride + 1
    return tuple(specs)


def _pointwise(in_chs: int, out_chs: int) -> ConvSpec:
    return ConvSpec(in_chs, out_chs, 1, relu=True)


def _depthwise(chs: int, kernel: int, stride: int = 1) -> ConvSpec:
    # No ReLU after depthwise convolutions (ShuffleNetV2).
    return ConvSpec(chs, chs, kernel, stride=stride, depthwise=True)


def block_layout(choice: int, in_chs: int, out_chs: int,
                 stride: int) -> Tuple[Tuple[ConvSpec, ...], Tuple[ConvSpec, ...]]:
    """``(branch_main, branch_proj)`` of a block; ``branch_proj`` is empty when ``stride`` is 1.

    Stride 1: the input's odd channels (``in_chs // 2``) enter the main branch, the even ones pass
    through. Stride 2: both branches see the whole input and the projection keeps its width. The
    main branch fills the rest of ``out_chs``; its hidden width is ``out_chs // 2``.
    """
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    if stride == 1 and (in_chs != out_chs or in_chs % 2):
        raise ValueError(f"a stride-1 block needs equal, even in/out channels, got {in_chs} -> {out_chs}")
    if not 0 <= choice < NUM_CHOICES:
        raise ValueError(f"choice {choice} is outside 0..{NUM_CHOICES - 1}")
    branch_in = in_chs // 2 if stride == 1 else in_chs
    mid, main_out = out_chs // 2, out_chs - branch_in
    if choice < len(_SHUFFLE_KERNELS):
        kernel = _SHUFFLE_KERNELS[choice]
        main = (_pointwise(branch_in, mid), _depthwise(mid, kernel, stride), _pointwise(mid, main_out))
    else:
        kernel = _XCEPTION_KERNEL
        main = (_depthwise(branch_in, kernel, stride), _pointwise(branch_in, mid),
                _depthwise(mid, kernel), _pointwise(mid, mid),
                _depthwise(mid, kernel), _pointwise(mid, main_out))
    proj = (_depthwise(in_chs, kernel, stride), _pointwise(in_chs, in_chs)) if stride == 2 else ()
    return main, proj


def stem_layout(in_chans: int = 3, widths: Widths = OFFICIAL_WIDTHS) -> ConvSpec:
    return ConvSpec(in_chans, widths.stem_channels, 3, stride=2, relu=True)


def head_layout(widths: Widths = OFFICIAL_WIDTHS) -> ConvSpec:
    return ConvSpec(widths.stage_channels[-1], widths.head_channels, 1, relu=True)


def validate_arch(arch: Sequence[int]) -> Arch:
    """``arch`` as a tuple of ints; ValueError naming the problem unless it is 20 choices in 0..3."""
    try:
        choices = tuple(int(c) for c in arch)
    except (TypeError, ValueError):
        raise ValueError(f"an SPOS arch is {NUM_LAYERS} choice indices, got {arch!r}") from None
    if len(choices) != NUM_LAYERS or any(c != raw for c, raw in zip(choices, arch)):
        raise ValueError(f"an SPOS arch is {NUM_LAYERS} integer choice indices (one per layer), got {arch!r}")
    bad = [(layer, c) for layer, c in enumerate(choices) if not 0 <= c < NUM_CHOICES]
    if bad:
        raise ValueError(f"arch {list(choices)} has choices outside 0..{NUM_CHOICES - 1} "
                         f"(layer, choice): {bad}")
    return choices
