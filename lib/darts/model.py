"""The evaluation networks built from a genotype: ``NetworkCIFAR`` and ``NetworkImageNet``.

Constructor arguments, structure and parameter names are the official ones (chenxin061/pdarts
``model.py``, itself DARTS'), so the released checkpoints load by name. Differences, on purpose:

* ``forward`` returns ``(logits, logits_aux)`` only in training with the auxiliary head, and
  ``logits`` otherwise (the official networks return ``(logits, None)`` outside training, which
  exported inference models cannot carry);
* ``drop_path_prob`` exists from construction (0.0); the official scripts must set it first;
* drop path works on any device (the official one allocates a CUDA mask);
* ``NetworkImageNet`` pools globally, equal to the official 7x7 average at 224 px and usable at
  other resolutions.

Convolutions and linear layers start from PyTorch's default initialisation
(``pimm.layers.torch_default_init``), which the official training relies on.
"""
from __future__ import annotations

from typing import Tuple, Union

import paddle
from paddle import nn

from pimm.layers import BatchNorm2d, create_conv2d, drop_path, torch_default_init

from .genotypes import Genotype, validate_genotype
from .operations import FactorizedReduce, ReLUConvBN, build_op

__all__ = ["AuxiliaryHeadCIFAR", "AuxiliaryHeadImageNet", "Cell", "NetworkCIFAR", "NetworkImageNet",
           "reduction_layers"]

Output = Union[paddle.Tensor, Tuple[paddle.Tensor, paddle.Tensor]]


def reduction_layers(layers: int) -> Tuple[int, int]:
    """Indices of the two reduction cells among ``layers`` cells (at one and two thirds)."""
    return layers // 3, 2 * layers // 3


class Cell(nn.Layer):
    """One cell of a genotype: two preprocessed inputs, two operations per node, a concat."""

    def __init__(self, genotype: Genotype, C_prev_prev: int, C_prev: int, C: int, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        # The previous cell reduced: its input s0 has twice s1's resolution.
        self.preprocess0 = (FactorizedReduce(C_prev_prev, C) if reduction_prev
                            else ReLUConvBN(C_prev_prev, C, 1, 1, 0))
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0)
        edges, concat = ((genotype.reduce, genotype.reduce_concat) if reduction
                         else (genotype.normal, genotype.normal_concat))
        self._steps = len(edges) // 2
        self._concat = tuple(concat)
        self.multiplier = len(concat)
        self._indices = tuple(index for _, index in edges)
        # Operations on the cell inputs of a reduction cell stride 2.
        self._ops = nn.LayerList([build_op(name, C, 2 if reduction and index < 2 else 1, True)
                                  for name, index in edges])
        self._is_identity = tuple(isinstance(op, nn.Identity) for op in self._ops)

    def forward(self, s0: paddle.Tensor, s1: paddle.Tensor, drop_prob: float) -> paddle.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        drop = self.training and drop_prob > 0.0
        for step in range(self._steps):
            node = None
            for position in (2 * step, 2 * step + 1):
                h = self._ops[position](states[self._indices[position]])
                if drop and not self._is_identity[position]:
                    h = drop_path(h, drop_prob, training=True)
                node = h if node is None else node + h
            states.append(node)
        return paddle.concat([states[i] for i in self._concat], axis=1)


class _AuxiliaryHead(nn.Layer):
    """Classifier on the output of the second reduction cell, for the training loss only."""

    def __init__(self, C: int, num_classes: int, pool_stride: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(),
            nn.AvgPool2D(5, stride=pool_stride, padding=0, exclusive=True),
            create_conv2d(C, 128, 1, padding=0),
            BatchNorm2d(128),
            nn.ReLU(),
            create_conv2d(128, 768, 2, padding=0),
            BatchNorm2d(768),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.features(x)
        return self.classifier(x.reshape([x.shape[0], -1]))


class AuxiliaryHeadCIFAR(_AuxiliaryHead):
    """For an 8x8 input (32 px images)."""

    def __init__(self, C: int, num_classes: int) -> None:
        super().__init__(C, num_classes, pool_stride=3)


class AuxiliaryHeadImageNet(_AuxiliaryHead):
    """For a 7x7 input (224 px images)."""

    def __init__(self, C: int, num_classes: int) -> None:
        super().__init__(C, num_classes, pool_stride=2)


class _Network(nn.Layer):
    """Cells of a genotype after a stem, doubling channels at each reduction cell, then global
    pooling and a classifier. Subclasses build their stem, then call ``_build_cells``."""

    def _build_cells(self, C_prev_prev: int, C_prev: int, C: int, num_classes: int, layers: int,
                     auxiliary: bool, genotype: Genotype, reduction_prev: bool, aux_head_type: type) -> None:
        self.genotype = validate_genotype(genotype)
        self._layers = layers
        self._auxiliary = auxiliary
        self.drop_path_prob = 0.0
        self._aux_after = reduction_layers(layers)[1]
        self.cells = nn.LayerList()
        C_curr, C_to_auxiliary = C, None
        for i in range(layers):
            reduction = i in reduction_layers(layers)
            if reduction:
                C_curr *= 2
            cell = Cell(self.genotype, C_prev_prev, C_prev, C_curr, reduction, reduction_prev)
            reduction_prev = reduction
            self.cells.append(cell)
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
            if i == self._aux_after:
                C_to_auxiliary = C_prev
        if auxiliary:
            self.auxiliary_head = aux_head_type(C_to_auxiliary, num_classes)
        self.global_pooling = nn.AdaptiveAvgPool2D(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        # the official networks train from PyTorch's default initialisation
        torch_default_init(self)

    def stem_forward(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """The first two cell inputs (s0, s1)."""
        raise NotImplementedError

    def forward(self, x: paddle.Tensor) -> Output:
        s0, s1 = self.stem_forward(x)
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self._aux_after and self._auxiliary and self.training:
                logits_aux = self.auxiliary_head(s1)
        out = self.global_pooling(s1)
        logits = self.classifier(out.reshape([out.shape[0], -1]))
        return (logits, logits_aux) if logits_aux is not None else logits


class NetworkCIFAR(_Network):
    """DARTS/P-DARTS network for 32 px images: a 3x3 stem of ``3 * C`` channels, ``layers`` cells
    (reduction cells at one and two thirds), auxiliary head after the second reduction cell.

    P-DARTS on CIFAR-10: ``NetworkCIFAR(36, 10, 20, True, PDARTS)``. Set ``drop_path_prob`` (the
    official schedule raises it linearly over training) before each epoch.
    """

    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool, genotype: Genotype) -> None:
        super().__init__()
        C_stem = 3 * C
        self.stem = nn.Sequential(create_conv2d(3, C_stem, 3, padding=1), BatchNorm2d(C_stem))
        self._build_cells(C_stem, C_stem, C, num_classes, layers, auxiliary, genotype,
                          reduction_prev=False, aux_head_type=AuxiliaryHeadCIFAR)

    def stem_forward(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        s = self.stem(x)
        return s, s


class NetworkImageNet(_Network):
    """DARTS/P-DARTS network for 224 px images: two stride-2 stems reduce 8x before the cells
    (``stem0`` to ``C``, then ``stem1``), which then reduce twice more.

    P-DARTS on ImageNet (mobile setting): ``NetworkImageNet(48, 1000, 14, True, PDARTS)``.
    """

    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool, genotype: Genotype) -> None:
        super().__init__()
        self.stem0 = nn.Sequential(
            create_conv2d(3, C // 2, 3, stride=2, padding=1),
            BatchNorm2d(C // 2),
            nn.ReLU(),
            create_conv2d(C // 2, C, 3, stride=2, padding=1),
            BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(),
            create_conv2d(C, C, 3, stride=2, padding=1),
            BatchNorm2d(C),
        )
        # The first cell's s0 (stem0) has twice the resolution of s1 (stem1), as after a reduction.
        self._build_cells(C, C, C, num_classes, layers, auxiliary, genotype,
                          reduction_prev=True, aux_head_type=AuxiliaryHeadImageNet)

    def stem_forward(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)

