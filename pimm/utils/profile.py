"""Multiply-accumulates and parameter counts of a Paddle model, counted the way thop 0.0.31 did.

The Cream papers and logs quote thop 0.0.31 figures (e.g. 13.849M MACs for the 14 MFLOPs net), so
the per-layer rules are thop's: a layer type without a rule (activations, dropout, max pooling,
element-wise products and sums in ``forward``) costs nothing. Rules match subclasses too, so custom
convolution and batch-norm layers are counted like the Paddle layers they extend.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import paddle

__all__ = ["profile", "count_parameters", "format_count", "MacRule", "PTFLOPS_RULES"]

# A rule returns the multiply-accumulates of one call: rule(layer, inputs, output).
MacRule = Callable[[paddle.nn.Layer, tuple, Any], int]

_CONVOLUTIONS = (paddle.nn.Conv1D, paddle.nn.Conv2D, paddle.nn.Conv3D,
                 paddle.nn.Conv1DTranspose, paddle.nn.Conv2DTranspose, paddle.nn.Conv3DTranspose)
_BATCH_NORMS = (paddle.nn.BatchNorm1D, paddle.nn.BatchNorm2D, paddle.nn.BatchNorm3D,
                paddle.nn.SyncBatchNorm, paddle.nn.BatchNorm)
_ADAPTIVE_AVG_POOLS = (paddle.nn.AdaptiveAvgPool1D, paddle.nn.AdaptiveAvgPool2D,
                       paddle.nn.AdaptiveAvgPool3D)
_AVG_POOLS = (paddle.nn.AvgPool1D, paddle.nn.AvgPool2D, paddle.nn.AvgPool3D)
# thop's per-output-element cost of interpolation; nearest, trilinear and area count zero.
_UPSAMPLE_COST = {"linear": 5, "bilinear": 11, "bicubic": 224 + 35}


def _numel(tensor: Any) -> int:
    return math.prod(tensor.shape)


def _spatial_dims(layer: paddle.nn.Layer, tensor: Any) -> list[int]:
    channels_last = getattr(layer, "_data_format", "NC").endswith("C")
    return list(tensor.shape[1:-1] if channels_last else tensor.shape[2:])


def _conv_macs(layer: paddle.nn.Layer, inputs: tuple, output: Any) -> int:
    kernel = math.prod(layer.weight.shape[2:])
    per_output = layer._in_channels // layer._groups * kernel + (layer.bias is not None)
    return _numel(output) * per_output


def _batch_norm_macs(layer: paddle.nn.Layer, inputs: tuple, output: Any) -> int:
    # Inference-time batch norm: subtract-and-scale, then shift (the profile runs in eval mode).
    return 2 * _numel(inputs[0])


def _adaptive_avg_pool_macs(layer: paddle.nn.Layer, inputs: tuple, output: Any) -> int:
    in_dims, out_dims = _spatial_dims(layer, inputs[0]), _spatial_dims(layer, output)
    window = math.prod(size_in // size_out for size_in, size_out in zip(in_dims, out_dims))
    return (window + 1) * _numel(output)  # window additions and one division per output


def _avg_pool_macs(layer: paddle.nn.Layer, inputs: tuple, output: Any) -> int:
    return _numel(output)


def _linear_macs(layer: paddle.nn.Layer, inputs: tuple, output: Any) -> int:
    in_features = layer.weight.shape[0]  # Paddle stores Linear weights as [in, out]
    return in_features * _numel(output)


def _leaky_relu_macs(layer: paddle.nn.Layer, inputs: tuple, output: Any) -> int:
    return _numel(inputs[0])


def _upsample_macs(layer: paddle.nn.Layer, inputs: tuple, output: Any) -> int:
    return _UPSAMPLE_COST.get(layer.mode, 0) * _numel(output)


def _bilinear_upsample_macs(layer: paddle.nn.Layer, inputs: tuple, output: Any) -> int:
    return _UPSAMPLE_COST["bilinear"] * _numel(output)


_DEFAULT_RULES: tuple[tuple[tuple[type, ...], MacRule], ...] = (
    (_CONVOLUTIONS, _conv_macs),
    (_BATCH_NORMS, _batch_norm_macs),
    (_ADAPTIVE_AVG_POOLS, _adaptive_avg_pool_macs),
    (_AVG_POOLS, _avg_pool_macs),
    ((paddle.nn.Linear,), _linear_macs),
    ((paddle.nn.LeakyReLU,), _leaky_relu_macs),
    ((paddle.nn.Upsample,), _upsample_macs),
    ((paddle.nn.UpsamplingBilinear2D,), _bilinear_upsample_macs),
)



def _input_elements(layer: paddle.nn.Layer, inputs: tuple, output: Any) -> int:
    return _numel(inputs[0])


def _output_elements(layer: paddle.nn.Layer, inputs: tuple, output: Any) -> int:
    return _numel(output)


# ptflops' rules where they differ from thop's, for ``profile(..., custom_ops=PTFLOPS_RULES)``:
# ReLU-family activations cost one per output element and every pooling one per *input* element.
# (Convolutions, affine batch norm and Linear weights count alike; ptflops >= 0.7 also adds a
# Linear's bias, one per output element.) Cream's FLOPs table and the DARTS papers' figures use them.
PTFLOPS_RULES: Mapping[type, MacRule] = {
    **{pool: _input_elements for pool in (
        paddle.nn.AdaptiveAvgPool1D, paddle.nn.AdaptiveAvgPool2D, paddle.nn.AdaptiveAvgPool3D,
        paddle.nn.AdaptiveMaxPool1D, paddle.nn.AdaptiveMaxPool2D, paddle.nn.AdaptiveMaxPool3D,
        paddle.nn.AvgPool1D, paddle.nn.AvgPool2D, paddle.nn.AvgPool3D,
        paddle.nn.MaxPool1D, paddle.nn.MaxPool2D, paddle.nn.MaxPool3D)},
    **{act: _output_elements for act in (paddle.nn.ReLU, paddle.nn.ReLU6, paddle.nn.PReLU, paddle.nn.ELU,
                                         paddle.nn.LeakyReLU)},
}

def count_parameters(model: paddle.nn.Layer) -> int:
    """Learnable parameters: every parameter except batch-norm running mean and variance.

    Paddle keeps BN running statistics as (non-trainable) parameters; they are excluded by
    identity rather than by ``stop_gradient`` so that a frozen model (an EMA copy) still counts.
    """
    running_stats = {
        id(stat) for layer in model.sublayers(include_self=True)
        if isinstance(layer, _BATCH_NORMS) for stat in (layer._mean, layer._variance)
    }
    return sum(math.prod(p.shape) for p in model.parameters() if id(p) not in running_stats)


def profile(
    model: paddle.nn.Layer,
    input_size: Sequence[int] = (1, 3, 224, 224),
    inputs: Any = None,
    custom_ops: Mapping[type, MacRule] | None = None,
) -> tuple[int, int]:
    """Return ``(macs, params)`` of one forward pass of ``model`` in eval mode.

    ``inputs`` (a tensor or a tuple of positional inputs) overrides the zero tensor of
    ``input_size``. ``custom_ops`` maps layer types to rules ``rule(layer, inputs, output) ->
    MACs`` and takes precedence over the built-in rules. A layer that matches a rule is counted
    as a whole (its sublayers are not visited); a layer called twice is counted twice; a layer
    never called costs nothing. ``params`` is :func:`count_parameters` of the whole model.
    The model's training flags are restored and the hooks removed afterwards.
    """
    rules = [*(custom_ops or {}).items(), *_DEFAULT_RULES]
    if inputs is None:
        # Zeros, not random numbers: the counts do not depend on values, and profiling must not
        # consume the global random state of a seeded run.
        inputs = (paddle.zeros(list(input_size), dtype=paddle.get_default_dtype()),)
    elif not isinstance(inputs, (tuple, list)):
        inputs = (inputs,)

    total_macs = 0

    def counting_hook(rule: MacRule) -> Callable[[paddle.nn.Layer, tuple, Any], None]:
        def hook(layer: paddle.nn.Layer, layer_inputs: tuple, output: Any) -> None:
            nonlocal total_macs
            total_macs += int(rule(layer, layer_inputs, output))
        return hook

    handles = []
    visited: set[int] = set()

    def attach(layer: paddle.nn.Layer) -> None:
        if id(layer) in visited:  # a layer registered under two names is hooked once
            return
        visited.add(id(layer))
        rule = next((rule for types, rule in rules if isinstance(layer, types)), None)
        if rule is not None:
            handles.append(layer.register_forward_post_hook(counting_hook(rule)))
            return
        for child in layer.children():
            attach(child)

    training_flags = [(layer, layer.training) for layer in model.sublayers(include_self=True)]
    try:
        model.eval()
        attach(model)
        with paddle.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
        for layer, training in training_flags:
            layer.training = training
    return total_macs, count_parameters(model)


def format_count(value: float, precision: int = 3) -> str:
    """``13848832 -> '13.849M'``, as thop's ``clever_format`` wrote the Cream logs.

    Suffixes T/G/M/K apply strictly above 1e12/1e9/1e6/1e3. Smaller values get no suffix: thop
    appended "B", which reads as "billion".
    """
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if value > scale:
            return f"{value / scale:.{precision}f}{suffix}"
    return f"{value:.{precision}f}"
