"""Architecture strings -> block arguments -> stages of blocks, and the TF-style initialisation.

Block strings use timm's notation, e.g. ``ir_r2_k3_s2_e6_c80_se0.25``: a leading block type
(``ir`` inverted residual, ``ds`` depthwise separable, ``dsa`` ds with activation after the
pointwise conv and no skip, ``cn`` conv-bn-act), then options in any order:
``r`` repeats, ``k`` depthwise kernel (``k3.5.7`` = mixed kernels), ``s`` stride, ``e`` expansion,
``c`` output channels, ``se`` squeeze-excite ratio, ``a`` / ``p`` expansion / pointwise kernel,
``n<act>`` block activation (``re``, ``r6``, ``hs``, ``sw``), ``noskip`` no residual.
"""
import copy
import math
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type

from paddle import nn

from pimm.layers import BatchNorm2d, get_act_layer, make_divisible

from .efficientnet_blocks import ConvBnAct, DepthwiseSeparableConv, InvertedResidual

BlockArgs = Dict[str, Any]

_ACT_CODES = {"re": "relu", "r6": "relu6", "hs": "hard_swish", "sw": "swish"}
_BLOCK_TYPES = ("ir", "ds", "dsa", "cn")
# Options each block type takes; everything else in a block string is an error.
_REQUIRED = {"ir": {"r", "k", "s", "e", "c"}, "ds": {"r", "k", "s", "c"}, "dsa": {"r", "k", "s", "c"},
             "cn": {"r", "k", "s", "c"}}
# A ConvBnAct has no SE, but Cream's arch strings write 'cn_r1_k1_s1_c320_se0.25': accept and drop
# the option, as timm does.
_OPTIONAL = {"ir": {"se", "a", "p"}, "ds": {"se", "p", "e"}, "dsa": {"se", "p", "e"}, "cn": {"se"}}


def _parse_kernel(value: str) -> Any:
    """'3' -> 3, '3.5.7' -> [3, 5, 7] (a mixed convolution)."""
    if value.isdigit():
        return int(value)
    return [int(k) for k in value.split(".")]


def decode_block_str(block_str: str) -> Tuple[BlockArgs, int]:
    """Decode one block string into (block args, repeat count). Raises ValueError on bad strings."""
    block_type, *ops = block_str.split("_")
    if block_type not in _BLOCK_TYPES:
        raise ValueError(f"Block string {block_str!r}: unknown block type {block_type!r}; "
                         f"use one of {list(_BLOCK_TYPES)}.")
    options: Dict[str, str] = {}
    act_layer = None
    noskip = False
    for op in ops:
        if op == "noskip":
            noskip = True
        elif op.startswith("n") and not op[1:2].isdigit():
            code = op[1:]
            if code not in _ACT_CODES:
                raise ValueError(f"Block string {block_str!r}: unknown activation {op!r}; "
                                 f"use one of {['n' + c for c in _ACT_CODES]}.")
            act_layer = get_act_layer(_ACT_CODES[code])
        else:
            match = re.fullmatch(r"([a-z]+)(\d.*)", op)
            if match is None:
                raise ValueError(f"Block string {block_str!r}: cannot parse option {op!r}.")
            options[match.group(1)] = match.group(2)

    missing = _REQUIRED[block_type] - set(options)
    unknown = set(options) - _REQUIRED[block_type] - _OPTIONAL[block_type]
    if missing or unknown:
        raise ValueError(f"Block string {block_str!r}: missing options {sorted(missing)}, "
                         f"unsupported options {sorted(unknown)} for block type {block_type!r}.")

    try:
        args: BlockArgs = dict(block_type=block_type, out_chs=int(options["c"]),
                               stride=int(options["s"]), act_layer=act_layer)
        if block_type == "cn":
            args["kernel_size"] = int(options["k"])
        else:
            args["dw_kernel_size"] = _parse_kernel(options["k"])
            args["pw_kernel_size"] = _parse_kernel(options.get("p", "1"))
            args["se_ratio"] = float(options["se"]) if "se" in options else None
            args["noskip"] = noskip or block_type == "dsa"
        if block_type == "ir":
            args["exp_kernel_size"] = _parse_kernel(options.get("a", "1"))
            args["exp_ratio"] = float(options["e"])
        elif block_type in ("ds", "dsa"):
            # 'e' is allowed for readability ('ds_r1_k3_s1_e1_c16'), but a ds block cannot expand.
            if float(options.get("e", "1")) != 1.0:
                raise ValueError(f"Block string {block_str!r}: a {block_type} block has no expansion; "
                                 f"use an 'ir' block or e1.")
            args["pw_act"] = block_type == "dsa"
        num_repeat = int(options["r"])
    except ValueError as err:
        raise ValueError(f"Block string {block_str!r}: bad number ({err}).") from None
    return args, num_repeat


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _format_kernel(kernel: Any) -> str:
    return ".".join(str(k) for k in kernel) if isinstance(kernel, (list, tuple)) else str(kernel)


def encode_block_str(block_args: BlockArgs, num_repeat: int = 1) -> str:
    """Inverse of ``decode_block_str``: block args (+ repeats) back to the string notation."""
    block_type = block_args["block_type"]
    if block_type == "cn":
        kernel = block_args["kernel_size"]
    else:
        kernel = block_args["dw_kernel_size"]
    parts = [block_type, f"r{num_repeat}", f"k{_format_kernel(kernel)}", f"s{block_args['stride']}"]
    if block_type == "ir":
        parts.append(f"e{_format_number(block_args['exp_ratio'])}")
    elif block_type in ("ds", "dsa"):
        parts.append("e1")
    parts.append(f"c{block_args['out_chs']}")
    if block_args.get("se_ratio"):
        parts.append(f"se{_format_number(block_args['se_ratio'])}")
    if block_type == "ir" and block_args.get("exp_kernel_size", 1) != 1:
        parts.append(f"a{_format_kernel(block_args['exp_kernel_size'])}")
    if block_args.get("pw_kernel_size", 1) != 1:
        parts.append(f"p{_format_kernel(block_args['pw_kernel_size'])}")
    if block_args.get("act_layer") is not None:
        code = next((c for c, name in _ACT_CODES.items()
                     if get_act_layer(name) is block_args["act_layer"]), None)
        if code is None:
            raise ValueError(f"Activation {block_args['act_layer']} has no block-string code.")
        parts.append(f"n{code}")
    if block_args.get("noskip") and block_type != "dsa":
        parts.append("noskip")
    return "_".join(parts)


def _scale_stage_depth(stage_args: List[BlockArgs], repeats: List[int], depth_multiplier: float,
                       depth_trunc: str) -> List[BlockArgs]:
    """Scale a stage's repeats by ``depth_multiplier`` (EfficientNet style) and expand them."""
    total = sum(repeats)
    if depth_trunc == "round":
        total_scaled = max(1, round(total * depth_multiplier))
    elif depth_trunc == "ceil":
        total_scaled = int(math.ceil(total * depth_multiplier))
    else:
        raise ValueError(f"depth_trunc must be 'ceil' or 'round', got {depth_trunc!r}.")
    # Distribute from the last definition backwards so the first block is the least likely to grow.
    scaled_reversed = []
    for r in reversed(repeats):
        r_scaled = max(1, round(r / total * total_scaled))
        scaled_reversed.append(r_scaled)
        total -= r
        total_scaled -= r_scaled
    expanded = []
    for args, r in zip(stage_args, reversed(scaled_reversed)):
        expanded.extend(copy.deepcopy(args) for _ in range(r))
    return expanded


def decode_arch_def(arch_def: Sequence[Sequence[str]], depth_multiplier: float = 1.0,
                    depth_trunc: str = "ceil") -> List[List[BlockArgs]]:
    """Decode a list of stages (each a list of block strings) into per-block argument dicts."""
    arch_args = []
    for stage_strings in arch_def:
        if isinstance(stage_strings, str):
            raise TypeError(f"Each stage must be a list of block strings, got the string {stage_strings!r}.")
        decoded = [decode_block_str(s) for s in stage_strings]
        arch_args.append(_scale_stage_depth([a for a, _ in decoded], [r for _, r in decoded],
                                            depth_multiplier, depth_trunc))
    return arch_args


def round_channels(channels: float, multiplier: float = 1.0, divisor: int = 8,
                   channel_min: Optional[int] = None) -> int:
    """Scale a channel count by ``multiplier`` and make it divisible (no-op for a falsy multiplier)."""
    if not multiplier:
        return channels
    return make_divisible(channels * multiplier, divisor, channel_min)


def resolve_bn_args(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Pop ``bn_tf``, ``bn_momentum``, ``bn_eps`` from model kwargs into BatchNorm2d kwargs.

    ``bn_tf`` selects TensorFlow's defaults (momentum 0.01, eps 1e-3, PyTorch convention).
    """
    bn_args: Dict[str, Any] = dict(momentum=0.01, eps=1e-3) if kwargs.pop("bn_tf", False) else {}
    momentum = kwargs.pop("bn_momentum", None)
    if momentum is not None:
        bn_args["momentum"] = momentum
    eps = kwargs.pop("bn_eps", None)
    if eps is not None:
        bn_args["eps"] = eps
    return bn_args


class EfficientNetBuilder:
    """Builds the stages of blocks from decoded block args.

    Only the first block of a stage strides. Once the output stride reaches ``output_stride``,
    further strides become dilation. Drop-path rate grows linearly with the global block index.
    After a call, ``in_chs`` holds the output channels of the last block.
    """

    def __init__(self, channel_multiplier: float = 1.0, channel_divisor: int = 8,
                 channel_min: Optional[int] = None, output_stride: int = 32, pad_type: str = "",
                 act_layer: Optional[Type[nn.Layer]] = None, se_kwargs: Optional[Dict[str, Any]] = None,
                 norm_layer: Type[nn.Layer] = BatchNorm2d, norm_kwargs: Optional[Dict[str, Any]] = None,
                 drop_path_rate: float = 0.0) -> None:
        self.channel_multiplier = channel_multiplier
        self.channel_divisor = channel_divisor
        self.channel_min = channel_min
        self.output_stride = output_stride
        self.pad_type = pad_type
        self.act_layer = act_layer
        self.se_kwargs = se_kwargs
        self.norm_layer = norm_layer
        self.norm_kwargs = norm_kwargs
        self.drop_path_rate = drop_path_rate
        self.in_chs: Optional[int] = None

    def _make_block(self, block_args: BlockArgs, block_idx: int, block_count: int) -> nn.Layer:
        args = dict(block_args)
        block_type = args.pop("block_type")
        args["in_chs"] = self.in_chs
        args["out_chs"] = round_channels(args["out_chs"], self.channel_multiplier,
                                         self.channel_divisor, self.channel_min)
        args["norm_layer"] = self.norm_layer
        args["norm_kwargs"] = self.norm_kwargs
        args["pad_type"] = self.pad_type
        args["act_layer"] = args["act_layer"] or self.act_layer
        if args["act_layer"] is None:
            raise ValueError("No activation: give the builder act_layer or the block an n<act> option.")
        if block_type == "cn":
            block = ConvBnAct(**args)
        else:
            args["se_kwargs"] = self.se_kwargs
            args["drop_path_rate"] = self.drop_path_rate * block_idx / block_count
            block_cls = InvertedResidual if block_type == "ir" else DepthwiseSeparableConv
            block = block_cls(**args)
        self.in_chs = args["out_chs"]
        return block

    def __call__(self, in_chs: int, model_block_args: List[List[BlockArgs]]) -> List[nn.Sequential]:
        """Build one ``paddle.nn.Sequential`` per stage; the caller's block args are not modified."""
        self.in_chs = in_chs
        block_count = sum(len(stage) for stage in model_block_args)
        block_idx = 0
        current_stride = 2  # the stem has already halved the input
        current_dilation = 1
        stages = []
        for stage_args in model_block_args:
            blocks = []
            for idx_in_stage, block_args in enumerate(stage_args):
                block_args = dict(block_args)
                if block_args["stride"] not in (1, 2):
                    raise ValueError(f"Block stride must be 1 or 2, got {block_args['stride']}.")
                if idx_in_stage > 0:
                    block_args["stride"] = 1
                next_dilation = current_dilation
                if block_args["stride"] > 1:
                    if current_stride * block_args["stride"] > self.output_stride:
                        next_dilation = current_dilation * block_args["stride"]
                        block_args["stride"] = 1
                    else:
                        current_stride *= block_args["stride"]
                block_args["dilation"] = current_dilation
                current_dilation = next_dilation
                blocks.append(self._make_block(block_args, block_idx, block_count))
                block_idx += 1
            stages.append(nn.Sequential(*blocks))
        return stages


def efficientnet_init_weights(model: nn.Layer) -> None:
    """TF/timm initialisation: conv normal(0, sqrt(2 / fan_out)) with fan_out = kh*kw*out/groups and
    zero bias; batch norm weight 1, bias 0; Linear uniform(+-1/sqrt(out_features)), bias 0."""
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, nn.Conv2D):
            kh, kw = layer._kernel_size
            fan_out = kh * kw * layer._out_channels // layer._groups
            nn.initializer.Normal(0.0, math.sqrt(2.0 / fan_out))(layer.weight)
            if layer.bias is not None:
                nn.initializer.Constant(0.0)(layer.bias)
        elif isinstance(layer, (nn.BatchNorm1D, nn.BatchNorm2D, nn.BatchNorm3D)):
            if layer.weight is not None:  # None for non-affine batch norm
                nn.initializer.Constant(1.0)(layer.weight)
                nn.initializer.Constant(0.0)(layer.bias)
        elif isinstance(layer, nn.Linear):
            bound = 1.0 / math.sqrt(layer.weight.shape[1])  # Paddle stores Linear weights [in, out]
            nn.initializer.Uniform(-bound, bound)(layer.weight)
            if layer.bias is not None:
                nn.initializer.Constant(0.0)(layer.bias)
