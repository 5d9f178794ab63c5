"""Cream's supernet: every layer of stages 1-5 holds one block per search-space choice, and a
forward pass runs one path through them.

Parameter names follow the reference supernet, ``blocks.<stage>.<layer>.<choice>.*`` (stages 0
and 6 have the single choice 0) plus ``meta_layer``, so supernet checkpoints written by the
reference load with ``pimm.models.load_checkpoint``.
"""
from __future__ import annotations

import contextlib
import copy
import functools
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import paddle
from paddle import nn

from pimm.layers import BatchNorm2d, ModeAware, SelectAdaptivePool2d, create_conv2d, dropout
from pimm.models import EfficientNetBuilder, decode_arch_def, efficientnet_init_weights, resolve_bn_args
from pimm.models.efficientnet_builder import BlockArgs
from lib.models.childnet import CREAM_NETWORK_KWARGS, zero_init_classifier
from lib.models.flops_table import FlopsEst
from lib.models.space import CHOICES, SEARCHED_STAGES, search_for_layer, supernet_stage_strings

__all__ = ["SuperNet", "SupernetPath", "align_choice_init", "build_supernet", "layer_flops_table"]

Arch = Sequence[Sequence[int]]


class _ChoiceBlockBuilder(EfficientNetBuilder):
    """Builds each layer as a ``LayerList`` of candidate blocks (one per entry of the layer's
    ``choices``: (kernel, expansion) pairs), all fed by the previous layer's output channels.

    Strides, dilations and block construction are the child networks' builder's, so a supernet
    path and the child net of the same arch are built from identical blocks.
    """

    def _make_block(self, block_args: BlockArgs, block_idx: int, block_count: int) -> nn.LayerList:
        args = dict(block_args)
        choices = args.pop("choices", None) or [None]
        in_chs = self.in_chs
        candidates = []
        for kernel_exp in choices:
            self.in_chs = in_chs
            if kernel_exp is not None:
                args.update(dw_kernel_size=kernel_exp[0], exp_ratio=float(kernel_exp[1]))
            candidates.append(super()._make_block(args, block_idx, block_count))
        return nn.LayerList(candidates)


class SuperNet(ModeAware, nn.Layer):
    """The weight-sharing supernet with ``sta_num[i]`` layers in searched stage ``i + 1``.

    Sublayers: conv_stem, bn1, act1, blocks[stage][layer][choice], global_pool, conv_head, act2,
    classifier, meta_layer (Linear ``num_classes * slice -> 1``, the meta-matching network).
    An arch is seven lists of choice indices, ``[[0], [...], ..., [0]]``; -1 skips a layer (any
    but a stage's first). A stage may list fewer layers than it has; the rest are not run.
    """

    def __init__(self, sta_num: Sequence[int], num_classes: int = 1000, in_chans: int = 3,
                 drop_rate: float = 0.0, global_pool: str = "avg", slice: int = 4,
                 norm_kwargs: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        norm_kwargs = norm_kwargs or {}
        self.sta_num = list(sta_num)
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.slice = slice
        act_layer = CREAM_NETWORK_KWARGS["act_layer"]
        stem_size = CREAM_NETWORK_KWARGS["stem_size"]
        num_features = CREAM_NETWORK_KWARGS["num_features"]

        self.conv_stem = create_conv2d(in_chans, stem_size, 3, stride=2)
        self.bn1 = BatchNorm2d(stem_size, **norm_kwargs)
        self.act1 = act_layer()

        block_args = decode_arch_def(supernet_stage_strings(self.sta_num))
        for stage in SEARCHED_STAGES:
            for layer_args in block_args[stage]:
                layer_args["choices"] = list(CHOICES)
        builder = _ChoiceBlockBuilder(act_layer=act_layer, se_kwargs=CREAM_NETWORK_KWARGS["se_kwargs"],
                                      norm_layer=BatchNorm2d, norm_kwargs=norm_kwargs)
        stages = builder(stem_size, block_args)
        self.blocks = nn.LayerList([nn.LayerList(list(stage.children())) for stage in stages])

        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool)
        # conv_head takes the pooled width (the reference breaks for 'catavgmax'; see MobileNetV3).
        self.conv_head = create_conv2d(builder.in_chs * self.global_pool.feat_mult(), num_features, 1,
                                       bias=True)
        self.act2 = act_layer()
        self.classifier = nn.Linear(num_features, num_classes)
        self.meta_layer = nn.Linear(num_classes * slice, 1)
        efficientnet_init_weights(self)

    def _check_arch(self, arch: Arch) -> None:
        problems = []
        if len(arch) != len(self.blocks):
            problems.append(f"it has {len(arch)} stages, the supernet {len(self.blocks)}")
        for stage, (choices, layers) in enumerate(zip(arch, self.blocks)):
            if len(choices) > len(layers):
                problems.append(f"stage {stage} lists {len(choices)} layers, the supernet has {len(layers)}")
            bad = [c for c in choices if not -1 <= c < len(layers[0])]
            if bad:
                problems.append(f"stage {stage} has choices {bad} outside -1..{len(layers[0]) - 1}")
            elif not choices or choices[0] == -1:
                problems.append(f"stage {stage} skips its first layer, which sets the stage's channels "
                                f"and stride (only later layers can be -1)")
        if problems:
            raise ValueError(f"arch {[list(c) for c in arch]} does not fit the supernet with sta_num "
                             f"{self.sta_num}: " + "; ".join(problems) + ".")

    def chosen_blocks(self, arch: Arch) -> List[nn.Layer]:
        """The blocks on ``arch``'s path, in forward order."""
        self._check_arch(arch)
        return [layers[layer][choice] for layers, choices in zip(self.blocks, arch)
                for layer, choice in enumerate(choices) if choice != -1]

    def forward_features(self, x: paddle.Tensor, arch: Arch) -> paddle.Tensor:
        x = self.act1(self.bn1(self.conv_stem(x)))
        for block in self.chosen_blocks(arch):
            x = block(x)
        x = self.global_pool(x)
        return self.act2(self.conv_head(x))

    def forward(self, x: paddle.Tensor, arch: Arch) -> paddle.Tensor:
        x = self.forward_features(x, arch)
        # reshape and pimm's dropout: flatten and F.dropout have no double-grad kernels.
        x = x.reshape([x.shape[0], -1])
        x = dropout(x, self.drop_rate, self.training, self.second_order)
        return self.classifier(x)

    def forward_meta(self, features: paddle.Tensor) -> paddle.Tensor:
        """The meta-matching score of a board entry's features (``slice`` softmax rows)."""
        return self.meta_layer(features.reshape([1, -1]))

    def path_parameters(self, arch: Arch) -> List[paddle.Tensor]:
        """Trainable parameters a path uses: everything outside ``blocks`` and ``meta_layer`` (in
        registration order), then the chosen blocks' parameters in forward order."""
        shared = [p for layer in self.children() if layer is not self.blocks and layer is not self.meta_layer
                  for p in layer.parameters()]
        on_path = [p for block in self.chosen_blocks(arch) for p in block.parameters()]
        return [p for p in shared + on_path if not p.stop_gradient]

    def meta_parameters(self) -> List[paddle.Tensor]:
        return list(self.meta_layer.parameters())


class SupernetPath(nn.Layer):
    """The supernet restricted to one path: a model that takes images only, which the engines
    evaluate, the benchmark times and trains, and ``paddle.jit.save`` exports like a child net.
    Works for any supernet with ``forward(images, arch)`` and ``chosen_blocks(arch)`` (SPOS's too)."""

    def __init__(self, supernet: SuperNet, arch: Arch) -> None:
        super().__init__()
        supernet.chosen_blocks(arch)  # raises a clear error when the path does not fit
        self.supernet = supernet
        self.arch = copy.deepcopy(arch)  # any supernet taking (images, arch): Cream's lists, SPOS's tuple

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.supernet(x, self.arch)


@contextlib.contextmanager
def _preserved_random_state() -> Iterator[None]:
    state = paddle.get_rng_state()
    try:
        yield
    finally:
        paddle.set_rng_state(state)


@functools.lru_cache(maxsize=1)
def layer_flops_table() -> Tuple[Tuple[Tuple[float, float], ...], ...]:
    """``table[i][choice] = (MFLOPs as stage i+1's first layer, MFLOPs as a later layer)`` at 224 px.

    This is the table ``search_for_layer`` sizes the supernet with (the reference ships it as
    hard-coded numbers). It is measured with ``FlopsEst`` on a supernet with two layers per
    stage, built without touching the global random state or parameter-name counters, so building
    it first does not change the weights a seeded run initialises.
    """
    with _preserved_random_state(), paddle.utils.unique_name.guard():
        model = SuperNet([2] * len(SEARCHED_STAGES), num_classes=1)
    layers = FlopsEst(model).flops_dict
    return tuple(tuple((layers[stage][0][choice], layers[stage][1][choice]) for choice in range(len(CHOICES)))
                 for stage in SEARCHED_STAGES)


def _embedded(own: np.ndarray, template: np.ndarray) -> np.ndarray:
    """``own`` with ``template`` written into its leading slice (kernels centred, zero around
    them) and every weight reading an input beyond the template's inputs set to zero."""
    out = own.copy()
    if own.ndim == 4:  # conv weight [out, in, kh, kw]
        pad = (own.shape[2] - template.shape[2]) // 2
        t_out, t_in = template.shape[:2]
        out[:, t_in:] = 0.0
        out[:t_out, :t_in] = 0.0
        out[:t_out, :t_in, pad:pad + template.shape[2], pad:pad + template.shape[3]] = template
    else:  # bias, batch-norm weight/bias [channels]
        out[:template.shape[0]] = template
    return out


def align_choice_init(model: SuperNet) -> None:
    """Make every candidate block of a searched layer start as the same function as its first
    choice (3x3 kernel, expansion 4), the smallest one.

    The first choice's weights are written into each larger candidate: its kernels centred in the
    5x5/7x7 ones (zero around them), its expansion channels first. The extra channels keep their
    own random weights, and the weights that read them (the projection, the squeeze-excite
    layers) start at zero, so they add nothing at first but receive gradients and grow. With
    independent random candidates, each layer's six blocks start as six unrelated functions and
    the layers after them must learn to serve all of them before any path can improve; aligned,
    the supernet starts like one network and the candidates grow apart as they train.
    """
    with paddle.no_grad():
        for stage in SEARCHED_STAGES:
            for candidates in model.blocks[stage]:
                template = {name: p.numpy() for name, p in candidates[0].named_parameters()}
                for block in list(candidates)[1:]:
                    for name, param in block.named_parameters():
                        param.set_value(_embedded(param.numpy(), template[name]))


def build_supernet(flops_minimum: float = 0, flops_maximum: float = 600, num_classes: int = 1000,
                   drop_rate: float = 0.0, global_pool: str = "avg", slice: int = 4,
                   resunit: bool = False, dil_conv: bool = False, aligned_init: bool = False,
                   zero_classifier: bool = False, **kwargs: Any) -> Tuple[SuperNet, List[int], int]:
    """The supernet for a FLOPs range (MFLOPs): ``(model, sta_num, resolution)``.

    ``sta_num`` and ``resolution`` come from ``search_for_layer`` with the supernet's own
    ``layer_flops_table()``. ``aligned_init`` starts the candidates of each layer as one
    function (``align_choice_init``), ``zero_classifier`` the classifier at zero
    (``lib.models.childnet.zero_init_classifier``). Further keyword
    arguments: ``in_chans`` and the batch-norm options ``bn_momentum``, ``bn_eps``, ``bn_tf``.
    The whole model, meta layer included, is built inside one ``paddle.utils.unique_name.guard()``.
    """
    unsupported = [name for name, value in (("RESUNIT", resunit), ("DIL_CONV", dil_conv)) if value]
    if unsupported:
        raise ValueError(f"SUPERNET.{' and SUPERNET.'.join(unsupported)} is not supported: the published "
                         f"search spaces use neither extra candidate. Set it to False.")
    norm_kwargs = resolve_bn_args(kwargs)
    sta_num, resolution = search_for_layer(flops_minimum, flops_maximum, layer_flops_table())
    with paddle.utils.unique_name.guard():
        model = SuperNet(sta_num, num_classes=num_classes, drop_rate=drop_rate, global_pool=global_pool,
                         slice=slice, norm_kwargs=norm_kwargs, **kwargs)
    if aligned_init:
        align_choice_init(model)
    if zero_classifier:
        zero_init_classifier(model)
    return model, sta_num, resolution
