"""SPOS's networks: the one-shot supernet (every layer holds all four candidates, batch norm without
affine parameters) and the stand-alone child network of one path (affine batch norm).

Parameter names are the official ones -- ``first_conv.<i>``, ``features.<layer>.<choice>.branch_*``
in the supernet, ``features.<layer>.branch_*`` in the child, ``conv_last.<i>``, ``classifier.0`` --
so official checkpoints load with ``pimm.models.load_checkpoint(model, path, strict=True)``.

Deliberate difference: the head averages over the whole final map where the official network uses a
fixed 7x7 average pool. At 224 px (a 7x7 map) the two are the same; at other input sizes the
official network breaks, this one works.
"""
from __future__ import annotations

from typing import List, Sequence

import paddle
from paddle import nn

from pimm.layers import SelectAdaptivePool2d, dropout
from pimm.models import register_model
from lib.spos.blocks import ShuffleBlock, conv_bn_sequence
from lib.spos.space import (NUM_CHOICES, OFFICIAL_WIDTHS, RELEASED_ARCH, Arch, Widths, head_layout,
                            layer_specs, stem_layout, validate_arch)

__all__ = ["SposSupernet", "SposChildNet", "build_supernet", "build_childnet", "spos_shufflenetv2"]

DEFAULT_DROP_RATE = 0.1  # the official dropout before the classifier


class _OneShotNet(nn.Layer):
    """Stem, ``features`` (set by the subclass), 1x1 head, global average pool, dropout, classifier."""

    def __init__(self, features: nn.Layer, num_classes: int, drop_rate: float, affine: bool,
                 in_chans: int, widths: Widths) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.widths = widths
        self.first_conv = conv_bn_sequence([stem_layout(in_chans, widths)], affine)
        self.features = features
        self.conv_last = conv_bn_sequence([head_layout(widths)], affine)
        self.global_pool = SelectAdaptivePool2d("avg", flatten=True)
        self.classifier = nn.Sequential(nn.Linear(widths.head_channels, num_classes, bias_attr=False))
        self._init_weights()

    def _init_weights(self) -> None:
        # The official initialisation: conv weights normal(0, 1 / (in_chs / groups)), the stem's
        # normal(0, 0.01); classifier normal(0, 0.01); affine batch norm scale 1, shift 1e-4.
        for name, layer in self.named_sublayers():
            if isinstance(layer, nn.Conv2D):
                std = 0.01 if name.startswith("first_conv") else 1.0 / layer.weight.shape[1]
                nn.initializer.Normal(0.0, std)(layer.weight)
            elif isinstance(layer, nn.BatchNorm2D) and layer.weight is not None:
                nn.initializer.Constant(1.0)(layer.weight)
                nn.initializer.Constant(1e-4)(layer.bias)
            elif isinstance(layer, nn.Linear):
                nn.initializer.Normal(0.0, 0.01)(layer.weight)

    def forward_head(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.global_pool(self.conv_last(x))
        x = dropout(x, self.drop_rate, self.training)
        return self.classifier(x)


class SposSupernet(_OneShotNet):
    """The one-shot supernet; ``net(x, arch)`` runs the path ``arch`` (20 choices in 0..3)."""

    def __init__(self, num_classes: int = 1000, drop_rate: float = DEFAULT_DROP_RATE, in_chans: int = 3,
                 widths: Widths = OFFICIAL_WIDTHS) -> None:
        features = nn.LayerList([
            nn.LayerList([ShuffleBlock(choice, spec.in_chs, spec.out_chs, spec.stride, affine=False)
                          for choice in range(NUM_CHOICES)])
            for spec in layer_specs(widths)])
        super().__init__(features, num_classes, drop_rate, affine=False, in_chans=in_chans, widths=widths)

    def chosen_blocks(self, arch: Sequence[int]) -> List[ShuffleBlock]:
        """The blocks on ``arch``'s path, in forward order (ValueError for an invalid arch)."""
        return [candidates[choice] for candidates, choice in zip(self.features, validate_arch(arch))]

    def path_parameters(self, arch: Sequence[int]) -> List[paddle.Tensor]:
        """Trainable parameters a path uses: the stem's, the head's and the classifier's, then the
        chosen blocks' in forward order."""
        shared = [p for layer in (self.first_conv, self.conv_last, self.classifier) for p in layer.parameters()]
        on_path = [p for block in self.chosen_blocks(arch) for p in block.parameters()]
        return [p for p in shared + on_path if not p.stop_gradient]

    def forward(self, x: paddle.Tensor, arch: Sequence[int]) -> paddle.Tensor:
        x = self.first_conv(x)
        for block in self.chosen_blocks(arch):
            x = block(x)
        return self.forward_head(x)


class SposChildNet(_OneShotNet):
    """The stand-alone network of one path, with affine batch norm."""

    def __init__(self, arch: Sequence[int], num_classes: int = 1000, drop_rate: float = DEFAULT_DROP_RATE,
                 in_chans: int = 3, widths: Widths = OFFICIAL_WIDTHS) -> None:
        self.arch: Arch = validate_arch(arch)
        features = nn.Sequential(*[ShuffleBlock(choice, spec.in_chs, spec.out_chs, spec.stride)
                                   for choice, spec in zip(self.arch, layer_specs(widths))])
        super().__init__(features, num_classes, drop_rate, affine=True, in_chans=in_chans, widths=widths)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.forward_head(self.features(self.first_conv(x)))


def build_supernet(num_classes: int = 1000, drop_rate: float = DEFAULT_DROP_RATE, in_chans: int = 3,
                   widths: Widths = OFFICIAL_WIDTHS) -> SposSupernet:
    """The SPOS supernet, built inside ``paddle.utils.unique_name.guard()`` (stable parameter names);
    ``widths`` (``lib.spos.space.Widths``) builds a narrower one than the official."""
    with paddle.utils.unique_name.guard():
        return SposSupernet(num_classes=num_classes, drop_rate=drop_rate, in_chans=in_chans, widths=widths)


def build_childnet(arch: Sequence[int], num_classes: int = 1000, drop_rate: float = DEFAULT_DROP_RATE,
                   in_chans: int = 3, widths: Widths = OFFICIAL_WIDTHS) -> SposChildNet:
    """The stand-alone network of ``arch``, built inside ``paddle.utils.unique_name.guard()``."""
    with paddle.utils.unique_name.guard():
        return SposChildNet(arch, num_classes=num_classes, drop_rate=drop_rate, in_chans=in_chans,
                            widths=widths)


@register_model
def spos_shufflenetv2(arch: Sequence[int] = RELEASED_ARCH, **kwargs) -> SposChildNet:
    """SPOS child network (default: the officially released path); ``kwargs`` go to ``build_childnet``."""
    return build_childnet(arch, **kwargs)
