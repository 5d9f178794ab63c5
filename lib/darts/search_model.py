"""The P-DARTS search network: cells of mixed operations weighted by softmax(alpha).

Every edge of a search cell is a ``MixedOp`` over the operations its switch row leaves in play;
its output is the sum of their outputs weighted by the softmax of the edge's architecture
parameters. Normal cells share ``alphas_normal``, reduction cells ``alphas_reduce`` (one row per
edge, one column per operation in play). Structure and parameter names are the official ones
(chenxin061/pdarts ``model_search.py``): batch norm without affine parameters inside the cells,
pooling followed by such a batch norm, and dropout after the identity skip-connects (the P-DARTS
skip-connect regularisation, rate ``skip_dropout``).

Architecture parameters and weights are separate tensors: ``arch_parameters()`` for the
architecture optimiser (Adam in P-DARTS), ``weights()`` for the weight optimiser (SGD). Both are
in ``parameters()`` and ``state_dict()`` (names ``alphas_normal``, ``alphas_reduce``), so one
checkpoint holds the whole search state.
"""
from __future__ import annotations

from typing import List, Sequence

import paddle
import paddle.nn.functional as F
from paddle import nn

from pimm.layers import BatchNorm2d, create_conv2d, dropout, torch_default_init

from .model import reduction_layers
from .operations import FactorizedReduce, ReLUConvBN, build_op
from .space import check_switches, num_edges, ops_in_play

__all__ = ["MixedOp", "SearchCell", "SearchNetwork"]


class MixedOp(nn.Layer):
    """The weighted sum of the operations in play on one edge (``m_ops``, in PRIMITIVES order)."""

    def __init__(self, C: int, stride: int, switch: Sequence[bool]) -> None:
        super().__init__()
        names = ops_in_play(switch)
        self.m_ops = nn.LayerList()
        for name in names:
            op = build_op(name, C, stride, affine=False)
            if "pool" in name:
                op = nn.Sequential(op, BatchNorm2d(C, affine=False))
            self.m_ops.append(op)
        self._is_identity = tuple(isinstance(op, nn.Identity) for op in self.m_ops)
        # 'none' adds weight * 0: nothing to compute unless it is the edge's only operation.
        self._computed = tuple(i for i, name in enumerate(names) if name != "none" or len(names) == 1)

    def forward(self, x: paddle.Tensor, weights: paddle.Tensor, skip_dropout: float) -> paddle.Tensor:
        out = None
        for i in self._computed:
            h = self.m_ops[i](x)
            if self._is_identity[i]:
                h = dropout(h, skip_dropout, training=self.training)
            h = weights[i] * h
            out = h if out is None else out + h
        return out


class SearchCell(nn.Layer):
    """A cell with a ``MixedOp`` on every edge; the output concatenates the last ``multiplier`` nodes."""

    def __init__(self, steps: int, multiplier: int, C_prev_prev: int, C_prev: int, C: int, reduction: bool,
                 reduction_prev: bool, switches: Sequence[Sequence[bool]]) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(C_prev_prev, C, affine=False) if reduction_prev
                            else ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self._steps = steps
        self._multiplier = multiplier
        self.cell_ops = nn.LayerList()
        edge = 0
        for node in range(steps):
            for j in range(node + 2):
                self.cell_ops.append(MixedOp(C, 2 if reduction and j < 2 else 1, switches[edge]))
                edge += 1

    def forward(self, s0: paddle.Tensor, s1: paddle.Tensor, weights: paddle.Tensor,
                skip_dropout: float) -> paddle.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self._steps):
            node = None
            for j, h in enumerate(states):
                h = self.cell_ops[offset + j](h, weights[offset + j], skip_dropout)
                node = h if node is None else node + h
            offset += len(states)
            states.append(node)
        return paddle.concat(states[-self._multiplier:], axis=1)


class SearchNetwork(nn.Layer):
    """The network a P-DARTS stage trains (the official ``Network``, without the loss inside).

    ``switches_normal`` / ``switches_reduce``: one row of ``len(PRIMITIVES)`` booleans per edge
    (``lib.darts.space``), the same count switched on in every row; the architecture parameters get
    that many columns, initialised as 1e-3 standard normals (Paddle's global generator);
    convolutions and the classifier start as PyTorch's (``pimm.layers.torch_default_init``). Reduction
    cells sit at one and two thirds of ``layers``. ``skip_dropout`` is the dropout rate after the
    identity skip-connects in training; set it each epoch (``lib.darts.pdarts.skip_dropout_rate``).
    ``forward`` returns the logits.
    """

    def __init__(self, C: int, num_classes: int, layers: int, switches_normal: Sequence[Sequence[bool]],
                 switches_reduce: Sequence[Sequence[bool]], steps: int = 4, multiplier: int = 4,
                 stem_multiplier: int = 3, skip_dropout: float = 0.0) -> None:
        super().__init__()
        self.switches_normal = check_switches(switches_normal, "switches_normal")
        self.switches_reduce = check_switches(switches_reduce, "switches_reduce")
        for name, switches in (("switches_normal", self.switches_normal), ("switches_reduce", self.switches_reduce)):
            if len(switches) != num_edges(steps):
                raise ValueError(f"{name} has {len(switches)} rows; a cell of {steps} nodes has "
                                 f"{num_edges(steps)} edges")
        self._layers = layers
        self._steps = steps
        self.skip_dropout = skip_dropout
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(create_conv2d(3, C_curr, 3, padding=1), BatchNorm2d(C_curr))
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.LayerList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in reduction_layers(layers)
            if reduction:
                C_curr *= 2
            switches = self.switches_reduce if reduction else self.switches_normal
            self.cells.append(SearchCell(steps, multiplier, C_prev_prev, C_prev, C_curr, reduction,
                                         reduction_prev, switches))
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2D(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        torch_default_init(self)  # as the official network's PyTorch layers start
        init = nn.initializer.Normal(mean=0.0, std=1e-3)
        self.alphas_normal = self.create_parameter([len(self.switches_normal), sum(self.switches_normal[0])],
                                                   default_initializer=init)
        self.alphas_reduce = self.create_parameter([len(self.switches_reduce), sum(self.switches_reduce[0])],
                                                   default_initializer=init)

    def arch_parameters(self) -> List[paddle.Tensor]:
        """``[alphas_normal, alphas_reduce]``."""
        return [self.alphas_normal, self.alphas_reduce]

    def weights(self) -> List[paddle.Tensor]:
        """The trainable parameters except the architecture parameters (the SGD-trained weights;
        batch-norm running statistics, which Paddle keeps as frozen parameters, excluded)."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch and not p.stop_gradient]

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        weights_normal = F.softmax(self.alphas_normal, axis=-1)
        weights_reduce = F.softmax(self.alphas_reduce, axis=-1)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            weights = weights_reduce if cell.reduction else weights_normal
            s0, s1 = s1, cell(s0, s1, weights, self.skip_dropout)
        out = self.global_pooling(s1)
        return self.classifier(out.reshape([out.shape[0], -1]))
