"""SPOS's candidate blocks: ShuffleNetV2 units built from ``lib.spos.space.block_layout``.

Each branch is an ``nn.Sequential`` of conv, batch norm[, ReLU] triples, so sublayer indices (and
hence parameter names ``branch_main.<i>.weight``) are the official ones.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import paddle
from paddle import nn

from pimm.layers import BatchNorm2d, create_conv2d
from lib.spos.space import ConvSpec, block_layout

__all__ = ["ShuffleBlock", "channel_split", "conv_bn_sequence"]


def conv_bn_sequence(convs: Sequence[ConvSpec], affine: bool = True) -> nn.Sequential:
    """Conv -> BN [-> ReLU] for each spec, flattened into one Sequential."""
    layers = []
    for conv in convs:
        layers.append(create_conv2d(conv.in_chs, conv.out_chs, conv.kernel, stride=conv.stride,
                                    depthwise=conv.depthwise))
        layers.append(BatchNorm2d(conv.out_chs, affine=affine))
        if conv.relu:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def channel_split(x: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """(even channels, odd channels): the channel shuffle of the previous block's ``[pass, main]``
    output fused with this block's split."""
    # unbind of a [N, C/2, 2, H, W] view: several times faster than strided slices, backward
    # included; the batch stays dynamic for exports (their spatial size is fixed)
    _, channels, height, width = x.shape
    even, odd = paddle.unbind(x.reshape([-1, channels // 2, 2, height, width]), axis=2)
    return even, odd


class ShuffleBlock(nn.Layer):
    """One candidate of a choice layer (``choice`` indexes ``lib.spos.space.CHOICE_NAMES``).

    Stride 1: even input channels pass through, odd ones enter ``branch_main``; output
    ``[pass-through, main]``. Stride 2 (no shuffle): ``[branch_proj(x), branch_main(x)]``.
    ``affine=False`` builds the supernet's batch norms (no learnt scale and shift).
    """

    def __init__(self, choice: int, in_chs: int, out_chs: int, stride: int, affine: bool = True) -> None:
        super().__init__()
        main, proj = block_layout(choice, in_chs, out_chs, stride)
        self.choice = choice
        self.stride = stride
        self.branch_main = conv_bn_sequence(main, affine)
        if proj:
            self.branch_proj = conv_bn_sequence(proj, affine)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.stride == 1:
            passed, x = channel_split(x)
            return paddle.concat([passed, self.branch_main(x)], axis=1)
        return paddle.concat([self.branch_proj(x), self.branch_main(x)], axis=1)
