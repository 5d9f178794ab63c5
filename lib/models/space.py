"""Cream's search space: the stage templates, the per-layer choices of stages 1-5, and the
FLOPs-constrained sizing of the supernet (``search_for_layer``).

The seven stages are written as timm-style block strings (``pimm.models.decode_block_str``).
Stage 0 (depthwise-separable) and stage 6 (1x1 ConvBnAct) are fixed; every layer of stages 1-5
is an inverted-residual block whose depthwise kernel and expansion come from ``CHOICES``. Only
the first layer of a stage strides.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from pimm.models.efficientnet_builder import decode_block_str, encode_block_str

__all__ = [
    "CHOICES", "STAGE_TEMPLATES", "SEARCHED_STAGES", "MAX_LAYERS", "SEARCH_RESOLUTION",
    "LayerFlops", "choice_to_kernel_exp", "template_choice", "layer_block_string",
    "supernet_stage_strings", "search_for_layer",
]

# Choice index -> (depthwise kernel size, expansion ratio); the order is the reference's and the
# released checkpoints' (the supernet's choice index is part of their parameter names).
CHOICES: Tuple[Tuple[int, int], ...] = ((3, 4), (3, 6), (5, 4), (5, 6), (7, 4), (7, 6))

# One block string per stage: its first layer as the reference defines it. The kernel/expansion
# written here is the template's own block, which a child net keeps in single-layer stages.
STAGE_TEMPLATES: Tuple[str, ...] = (
    "ds_r1_k3_s1_e1_c16_se0.25",
    "ir_r1_k3_s2_e4_c24_se0.25",
    "ir_r1_k5_s2_e4_c40_se0.25",
    "ir_r1_k3_s2_e6_c80_se0.25",
    "ir_r1_k3_s1_e6_c96_se0.25",
    "ir_r1_k5_s2_e6_c192_se0.25",
    "cn_r1_k1_s1_c320_se0.25",
)
SEARCHED_STAGES: Tuple[int, ...] = (1, 2, 3, 4, 5)
MAX_LAYERS = 4  # searched layers per stage in the largest supernet
SEARCH_RESOLUTION = 224  # the supernet's FLOPs table is always measured at this size
# The reference writes stage 3's fourth supernet layer as 'ir_r2_...': a supernet with four layers
# there builds a fifth that no path uses. Reference supernet checkpoints contain its weights, so it
# is kept.
_REPEATED_LAST_LAYER_STAGE = 3

# (MFLOPs of the stage's first layer, MFLOPs of any later layer) per searched stage (0 = stage 1)
# and choice, at SEARCH_RESOLUTION.
LayerFlops = Sequence[Sequence[Tuple[float, float]]]

# search_for_layer grows stages in this order (0 = stage 1), each up to its limit.
_GROWTH_ORDER = (2, 3, 4, 1, 0, 2, 3, 4, 1, 0)
_GROWTH_LIMITS = (3, 3, 3, 2, 2, 4, 4, 4, 4, 4)
_RESOLUTION_STEP = 32


def choice_to_kernel_exp(choice: int) -> Tuple[int, int]:
    if not 0 <= choice < len(CHOICES):
        raise ValueError(f"choice index {choice} is outside 0..{len(CHOICES) - 1}")
    return CHOICES[choice]


def template_choice(stage: int) -> int:
    """The choice index equal to ``stage``'s template block (0 for the fixed stages 0 and 6)."""
    if stage not in SEARCHED_STAGES:
        return 0
    args, _ = decode_block_str(STAGE_TEMPLATES[stage])
    return CHOICES.index((args["dw_kernel_size"], int(args["exp_ratio"])))


def layer_block_string(stage: int, choice: Optional[int] = None, repeats: int = 1) -> str:
    """The block string of a layer of ``stage`` built with ``choice`` (None: the template's block).

    ``layer_block_string(2, 3) == 'ir_r1_k5_s2_e6_c40_se0.25'``. The stride stays the template's;
    builders set it to 1 for every layer after a stage's first.
    """
    args, _ = decode_block_str(STAGE_TEMPLATES[stage])
    if choice is not None and stage in SEARCHED_STAGES:
        kernel, exp_ratio = choice_to_kernel_exp(choice)
        args.update(dw_kernel_size=kernel, exp_ratio=float(exp_ratio))
    return encode_block_str(args, repeats)


def supernet_stage_strings(sta_num: Sequence[int]) -> List[List[str]]:
    """The supernet's stages as block strings: one template string per layer (choices are attached
    by the supernet builder), ``sta_num[i]`` layers in searched stage ``i + 1``."""
    if len(sta_num) != len(SEARCHED_STAGES) or not all(1 <= n <= MAX_LAYERS for n in sta_num):
        raise ValueError(f"sta_num {list(sta_num)} must hold {len(SEARCHED_STAGES)} layer counts "
                         f"between 1 and {MAX_LAYERS}")
    stages = [[layer_block_string(0)]]
    for stage, layers in zip(SEARCHED_STAGES, sta_num):
        strings = [layer_block_string(stage)] * layers
        if stage == _REPEATED_LAST_LAYER_STAGE and layers == MAX_LAYERS:
            strings[-1] = layer_block_string(stage, repeats=2)
        stages.append(strings)
    stages.append([layer_block_string(len(STAGE_TEMPLATES) - 1)])
    return stages


def _smallest_and_largest_first_layers(layer_flops: LayerFlops) -> Tuple[float, float]:
    # Summed in stage order, as the reference does (the floats must match its comparisons).
    smallest = sum(layer_flops[i][0][0] for i in range(len(SEARCHED_STAGES)))
    largest = sum(layer_flops[i][len(CHOICES) - 1][0] for i in range(len(SEARCHED_STAGES)))
    return smallest, largest


def _possible_range(layer_flops: LayerFlops) -> Tuple[float, float]:
    """(the least FLOPS_MAXIMUM accepted, the largest FLOPS_MINIMUM accepted)."""
    smallest, largest = _smallest_and_largest_first_layers(layer_flops)
    scale = 1.0
    for size_factor in range(SEARCH_RESOLUTION // _RESOLUTION_STEP - 1, 1, -1):
        scale *= (SEARCH_RESOLUTION // _RESOLUTION_STEP) / size_factor
    biggest = largest + sum(
        layer_flops[stage][len(CHOICES) - 1][1] * (MAX_LAYERS - 1) for stage in range(len(SEARCHED_STAGES)))
    return smallest / scale, biggest


def search_for_layer(flops_minimum: float, flops_maximum: float,
                     layer_flops: LayerFlops) -> Tuple[List[int], int]:
    """Size the supernet for a FLOPs range (MFLOPs): ``(sta_num, resolution)``.

    Reproduces the reference: layers are added in a fixed stage order while the path made of each
    stage's largest choice stays within ``flops_maximum``; when even the smallest single-layer path
    is too big, the resolution drops in 32 px steps. At each step the reference rescales the FLOPs
    bounds by ``7 / size_factor`` *cumulatively* (the intended area scaling would be
    ``(7 / size_factor) ** 2``, not compounded); that defines the published spaces, so it is kept.
    ``layer_flops`` is the per-choice table; the supernet's own is
    ``lib.models.supernet.layer_flops_table()`` (measured on its blocks, so it needs the network
    and is passed in rather than built here).

    Raises ValueError for a reversed or impossible range, naming what is possible.
    """
    requested = f"[{flops_minimum:g}, {flops_maximum:g}] MFLOPs"
    if flops_minimum > flops_maximum:
        # The reference accepts a reversed range and returns a space outside it.
        raise ValueError(f"FLOPs range {requested} is reversed: FLOPS_MINIMUM must not exceed FLOPS_MAXIMUM.")
    least_maximum, largest_minimum = _possible_range(layer_flops)
    impossible = (f"FLOPs range {requested} is impossible for Cream's search space: FLOPS_MAXIMUM must "
                  f"be at least {least_maximum:.3f} and FLOPS_MINIMUM at most {largest_minimum:.3f} (the "
                  f"bounds apply to the searched layers: the smallest path's at the smallest resolution, "
                  f"the largest path's at {SEARCH_RESOLUTION} px).")

    sta_num = [1] * len(SEARCHED_STAGES)
    size_factor = SEARCH_RESOLUTION // _RESOLUTION_STEP
    base_min_flops, base_max_flops = _smallest_and_largest_first_layers(layer_flops)
    top = len(CHOICES) - 1

    if base_min_flops > flops_maximum:
        while base_min_flops > flops_maximum and size_factor >= 2:
            size_factor -= 1
            flops_minimum = flops_minimum * (7.0 / size_factor)
            flops_maximum = flops_maximum * (7.0 / size_factor)
        if size_factor < 2:
            raise ValueError(impossible)
    elif base_max_flops < flops_minimum:
        pointer = 0
        while base_max_flops < flops_minimum and pointer < len(_GROWTH_ORDER):
            stage = _GROWTH_ORDER[pointer]
            if sta_num[stage] >= _GROWTH_LIMITS[pointer]:
                pointer += 1
                continue
            base_max_flops += layer_flops[stage][top][1]
            sta_num[stage] += 1
        if base_max_flops < flops_minimum:
            raise ValueError(impossible)

    for pointer, stage in enumerate(_GROWTH_ORDER):
        while sta_num[stage] < _GROWTH_LIMITS[pointer]:
            base_max_flops += layer_flops[stage][top][1]
            if base_max_flops > flops_maximum:
                return sta_num, size_factor * _RESOLUTION_STEP
            sta_num[stage] += 1
    return sta_num, size_factor * _RESOLUTION_STEP

