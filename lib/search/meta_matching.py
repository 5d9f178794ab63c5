"""The meta-matching network: picks each student's teacher on the board and learns how much to trust it.

For a student path ``a`` with weights ``w`` and a board entry ``k`` (images ``x_k``, stored softmax
``f_k``), the meta layer ``M`` (a Linear layer of the supernet, parameters ``theta``) gives the
matching score

    rho_k = sigmoid(M(softmax(student(x_k)) - f_k)),

the teacher is the entry with the highest score and the student trains on
``(rho * KD + (2 - rho) * CE) / 2`` (the reference's weighting of the paper's ``CE + rho * KD``).

Every UPDATE_ITER steps ``theta`` takes one step on the paper's one-step approximation of
``min_theta L_val(w*(theta))``: with the first SLICE images of the batch as training data and the
next SLICE as validation data,

    g  = d(rho * KD(student(x_train; w), teacher(x_train))) / dw     (graph kept: g depends on theta)
    w' = w - lr * g                                                   (a simulated SGD step)
    theta <- theta - meta_lr * clip(d CE(student(x_val; w'), y_val) / d theta, norm 1)

Deliberate differences from the reference (microsoft/Cream ``MetaMatchingNetwork``):

* the simulated step descends (``w - lr * g``, the sign early reference versions got wrong) with
  ``lr`` the *student's* current learning rate, because ``w'`` stands for the weights the student
  will have after its own update; the reference used the last parameter group's rate, i.e. the meta
  layer's (1e-4 x schedule), which shrinks the meta gradient by that factor;
* the simulated step stays simulated: the student's weights only move in the normal training step
  (the reference also applied ``g`` as an extra optimizer step of the student on the SLICE images);
* ``rho`` is the selected teacher's score with the positive sign (see
  ``lib.search.board.select_teacher``), and it is a plain number in the main loss, so the main loss
  never moves the meta layer (the reference's ``meta_value`` kept its graph).

Entries are scored with one forward pass each, as in the reference: a single pass over all entries'
images would normalise each entry with statistics pooled over the whole board, so a score would
change with the other paths on it. (A single pass with batch norm normalising each entry's slice
separately measured no faster on CPU: the per-entry passes cost about 1.3x the pooled pass at 64 px
and less than it at 224 px.)

Less work than the reference, same result: the meta update scores the board without recording a
graph (on the fast first-order kernels, as the teacher's pass), then rebuilds the graph of the
chosen teacher's entry alone (its running-statistics update not repeated). Only that entry's
score enters the loss; the reference kept every entry's graph, so both of its backward passes
carried exact zeros through POOL_SIZE - 1 whole networks (about two thirds of its meta-update
time on CPU, docs/BENCHMARKS.md).

Paddle specifics (see docs/REFERENCE_NOTES §7): the whole update runs under
``pimm.layers.layer_modes(supernet, second_order=True)`` so every op has a double-grad kernel;
``w'`` is put into the layers by swapping tensors into ``_parameters`` and restored in ``finally``
(an in-place update would silently give a wrong meta gradient); the losses come from ``pimm.loss``
(Paddle's softmax and cross-entropy have no double grad).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import paddle
import paddle.nn.functional as F

from pimm.layers import layer_modes
from pimm.loss import soft_target_cross_entropy, softmax

from .board import PrioritizedBoard, select_teacher

__all__ = ["MetaMatchingNetwork", "MetaUpdate", "matching_scores", "simulated_step"]

ArchList = List[List[int]]
Reduce = Callable[[paddle.Tensor], paddle.Tensor]


def _entry_score(supernet: paddle.nn.Layer, arch: ArchList, entry) -> paddle.Tensor:
    """The meta layer's raw output for ``arch`` against one board entry, shape ``[1]``."""
    probs = softmax(supernet(entry.images, arch), axis=-1).reshape([1, -1])
    return supernet.meta_layer(probs - entry.features.reshape([1, -1])).reshape([-1])


def matching_scores(supernet: paddle.nn.Layer, arch: ArchList, board: PrioritizedBoard) -> paddle.Tensor:
    """The meta layer's raw output for ``arch`` against every board entry, shape ``[len(board)]``.

    One forward pass per entry, in board order, as in the reference: each entry's images are
    normalised with their own batch statistics (so an entry's score does not depend on the rest of
    the board) and the running statistics take one update per entry. Gradients flow to the meta
    layer and to the student's weights unless called under ``paddle.no_grad()``.
    """
    if not board.entries:
        raise ValueError("matching_scores: the board is empty")
    return paddle.concat([_entry_score(supernet, arch, entry) for entry in board.entries])


@contextmanager
def _running_statistics_kept(model: paddle.nn.Layer) -> Iterator[None]:
    """Batch norms' running statistics are the same after the block as before it."""
    norms = [layer for layer in model.sublayers(include_self=True)
             if isinstance(getattr(layer, "_mean", None), paddle.Tensor)
             and isinstance(getattr(layer, "_variance", None), paddle.Tensor)]
    with paddle.no_grad():
        saved = [(layer._mean.clone(), layer._variance.clone()) for layer in norms]
    try:
        yield
    finally:
        with paddle.no_grad():
            for layer, (mean, variance) in zip(norms, saved):
                paddle.assign(mean, output=layer._mean)
                paddle.assign(variance, output=layer._variance)


def _owners(model: paddle.nn.Layer, params: Sequence[paddle.Tensor]) -> List[List[Tuple[paddle.nn.Layer, str]]]:
    """For each parameter, every (layer, attribute name) that holds it."""
    index = {id(p): i for i, p in enumerate(params)}
    owners: List[List[Tuple[paddle.nn.Layer, str]]] = [[] for _ in params]
    for layer in model.sublayers(include_self=True):
        for name, p in layer._parameters.items():
            if p is not None and id(p) in index:
                owners[index[id(p)]].append((layer, name))
    missing = [params[i].name for i, o in enumerate(owners) if not o]
    if missing:
        raise ValueError(f"parameters {missing[:3]} do not belong to the model")
    return owners


@contextmanager
def simulated_step(model: paddle.nn.Layer, params: Sequence[paddle.Tensor],
                   grads: Sequence[Optional[paddle.Tensor]], lr: float) -> Iterator[None]:
    """Inside the block, the layers of ``model`` compute with ``p - lr * g`` in place of each ``p``
    in ``params`` (a ``None`` grad leaves ``p`` as it is); the real parameters are put back on exit.
    Nothing is modified in place, so gradients flow through ``g`` to whatever it depends on.
    """
    params = list(params)
    owners = _owners(model, params)
    try:
        for p, g, holders in zip(params, grads, owners):
            if g is not None:
                stepped = p - lr * g
                for layer, name in holders:
                    layer._parameters[name] = stepped
        yield
    finally:
        for p, holders in zip(params, owners):
            for layer, name in holders:
                layer._parameters[name] = p


@dataclass
class MetaUpdate:
    teacher_index: int
    rho: float  # the teacher's matching score before the update
    val_loss: float  # CE on the validation slice with the simulated weights
    grad_norm: float  # norm of the meta gradient before clipping


class MetaMatchingNetwork:
    """Teacher selection and the meta layer's update (see the module doc).

    ``slice_size``: SUPERNET.SLICE, the images per board entry and per half of the meta step.
    ``reduce``: averages a tensor over the ranks of a distributed run (identity when single): scores
    are averaged before choosing the teacher, so all ranks pick the same one, and meta gradients
    are averaged before the step, so the meta layer stays identical on all ranks.
    """

    def __init__(self, slice_size: int, clip_norm: float = 1.0, reduce: Optional[Reduce] = None) -> None:
        if slice_size < 1:
            raise ValueError(f"SUPERNET.SLICE must be >= 1, got {slice_size}")
        self.slice_size = int(slice_size)
        self.clip_norm = float(clip_norm)
        self.reduce = reduce

    def _reduced(self, tensor: paddle.Tensor) -> paddle.Tensor:
        return self.reduce(tensor) if self.reduce is not None else tensor

    def select_teacher(self, supernet: paddle.nn.Layer, arch: ArchList, board: PrioritizedBoard,
                       pick_method: str) -> Tuple[int, float]:
        """``(board index, rho)`` of the teacher for ``arch``; no gradients are recorded."""
        if pick_method != "meta":
            return select_teacher(board, pick_method, student=arch)
        with paddle.no_grad():
            scores = self._reduced(matching_scores(supernet, arch, board))
        return select_teacher(board, "meta", scores.numpy().tolist(), student=arch)

    def meta_gradients(self, supernet: paddle.nn.Layer, images: paddle.Tensor, targets: paddle.Tensor,
                       arch: ArchList, board: PrioritizedBoard, loss_fn: Callable, lr: float
                       ) -> Tuple[List[paddle.Tensor], MetaUpdate]:
        """The gradient of the validation slice's loss after the simulated student step, w.r.t.
        ``supernet.meta_parameters()`` (this rank's data only; unclipped)."""
        s = self.slice_size
        if images.shape[0] < 2 * s:
            raise ValueError(f"the meta-matching update needs 2 * SUPERNET.SLICE = {2 * s} images per "
                             f"batch, got {images.shape[0]}; raise DATASET.BATCH_SIZE or lower SLICE")
        x_train, x_val, y_val = images[:s], images[s:2 * s], targets[s:2 * s]
        student_params = [p for p in supernet.path_parameters(arch) if not p.stop_gradient]
        meta_params = list(supernet.meta_parameters())
        # Passes without a graph run on the first-order kernels (the fast ones); the running
        # statistics move in the reference's order: every entry, the student, the teacher, the
        # validation slice.
        index, rho = self.select_teacher(supernet, arch, board, "meta")
        with layer_modes(supernet, second_order=True):
            with _running_statistics_kept(supernet):
                score = _entry_score(supernet, arch, board.entries[index])
            student = supernet(x_train, arch)
        with paddle.no_grad():
            teacher = softmax(supernet(x_train, board.entries[index].arch), axis=-1)
        with layer_modes(supernet, second_order=True):
            kd = F.sigmoid(score[0]) * soft_target_cross_entropy(student, teacher)
            grads = paddle.grad(kd, student_params, create_graph=True, allow_unused=True)
            with simulated_step(supernet, student_params, grads, lr):
                val_loss = loss_fn(supernet(x_val, arch), y_val)
            meta_grads = paddle.grad(val_loss, meta_params)
        info = MetaUpdate(teacher_index=index, rho=rho, val_loss=float(val_loss), grad_norm=0.0)
        return [g.detach() for g in meta_grads], info

    def update(self, supernet: paddle.nn.Layer, optimizer: paddle.optimizer.Optimizer,
               images: paddle.Tensor, targets: paddle.Tensor, arch: ArchList, board: PrioritizedBoard,
               loss_fn: Callable, lr: float) -> MetaUpdate:
        """One step of the meta layer with ``optimizer`` (the supernet's, whose meta groups carry
        META_LR); no other parameter moves: only the meta parameters hold gradients during the step.
        """
        grads, info = self.meta_gradients(supernet, images, targets, arch, board, loss_fn, lr)
        grads = [self._reduced(g) for g in grads]
        norm = float(paddle.sqrt(sum((g * g).sum() for g in grads)))
        scale = min(1.0, self.clip_norm / (norm + 1e-6))
        optimizer.clear_grad(set_to_zero=False)
        for p, g in zip(supernet.meta_parameters(), grads):
            p.grad = g * scale
        optimizer.step()
        optimizer.clear_grad(set_to_zero=False)
        info.grad_norm = norm
        return info
