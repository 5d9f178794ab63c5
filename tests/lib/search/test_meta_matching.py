"""The meta-matching update: its meta gradient against finite differences (float64), and a real
step that moves the meta layer and nothing else."""
import numpy as np
import paddle
import pytest
from paddle import nn

from lib.search.board import PrioritizedBoard
from lib.search.meta_matching import MetaMatchingNetwork, matching_scores, simulated_step
from pimm.layers import BatchNorm2d, SelectAdaptivePool2d, Swish, create_conv2d, layer_modes
from pimm.loss import LabelSmoothingCrossEntropy, soft_target_cross_entropy, softmax
from pimm.models import InvertedResidual

SLICE, CLASSES = 2, 3
STUDENT = [[0], [1], [0]]


class ToySuperNet(nn.Layer):
    """The supernet's interface on a two-choice, one-layer space."""

    def __init__(self):
        super().__init__()
        self.conv_stem = create_conv2d(3, 8, 3, stride=2)
        self.bn1 = BatchNorm2d(8)
        self.act1 = Swish()
        self.blocks = nn.LayerList([nn.LayerList([nn.LayerList([
            InvertedResidual(8, 8, k, exp_ratio=2, act_layer=Swish, se_ratio=0.25) for k in (3, 5)])])])
        self.pool = SelectAdaptivePool2d("avg", flatten=True)
        self.classifier = nn.Linear(8, CLASSES)
        self.meta_layer = nn.Linear(CLASSES * SLICE, 1)

    def forward(self, x, arch):
        x = self.act1(self.bn1(self.conv_stem(x)))
        for stage, choices in zip(self.blocks, arch[1:-1]):
            for layer, choice in zip(stage, choices):
                x = layer[choice](x)
        return self.classifier(self.pool(x))

    def path_parameters(self, arch):
        params = [p for n, p in self.named_parameters() if not n.startswith(("blocks", "meta_layer"))]
        for stage, choices in zip(self.blocks, arch[1:-1]):
            for layer, choice in zip(stage, choices):
                params += layer[choice].parameters()
        return params

    def meta_parameters(self):
        return self.meta_layer.parameters()


@pytest.fixture
def float64():
    previous = paddle.get_default_dtype()
    paddle.set_default_dtype("float64")
    yield
    paddle.set_default_dtype(previous)


def _setup(seed):
    paddle.seed(seed)
    rng = np.random.RandomState(seed)
    model = ToySuperNet()
    model.train()
    dtype = paddle.get_default_dtype()
    for p in model.meta_parameters():  # a meta layer far from zero, so the scores differ clearly
        p.set_value(rng.randn(*p.shape).astype(dtype))
    board = PrioritizedBoard(pool_size=4, flops_minimum=0, flops_maximum=100)
    for choice, prec1 in ((0, 60.0), (1, 50.0), (0, 40.0)):
        logits = rng.randn(SLICE, CLASSES)
        features = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        board.consider([[0], [choice], [prec1 // 10]], prec1, 10.0, 1.0,
                       paddle.to_tensor(rng.randn(SLICE, 3, 12, 12).astype(dtype)),
                       paddle.to_tensor(features.astype(dtype)))
    images = paddle.to_tensor(rng.randn(2 * SLICE + 1, 3, 12, 12).astype(dtype))
    targets = paddle.to_tensor(rng.randint(0, CLASSES, 2 * SLICE + 1))
    return model, board, images, targets, rng


def _patch_arch(model):
    # board paths carry a dummy third stage (to make them distinct); the toy has one stage
    forward = model.forward
    model.forward = lambda x, arch: forward(x, arch[:2] + [[0]])


def test_meta_gradient_matches_finite_differences(float64):
    model, board, images, targets, rng = _setup(0)
    _patch_arch(model)
    meta = MetaMatchingNetwork(SLICE)
    loss_fn = LabelSmoothingCrossEntropy(0.1)
    lr = 0.5
    grads, info = meta.meta_gradients(model, images, targets, STUDENT, board, loss_fn, lr)
    theta = list(model.meta_parameters())
    start = [p.numpy().copy() for p in theta]

    def val_loss_at(direction, eps):
        for p, p0, d in zip(theta, start, direction):
            p.set_value(p0 + eps * d)
        _, moved = meta.meta_gradients(model, images, targets, STUDENT, board, loss_fn, lr)
        assert moved.teacher_index == info.teacher_index
        return moved.val_loss

    eps = 1e-6
    for _ in range(2):
        direction = [rng.randn(*p.shape) for p in theta]
        numeric = (val_loss_at(direction, eps) - val_loss_at(direction, -eps)) / (2 * eps)
        analytic = sum(float((g.numpy() * d).sum()) for g, d in zip(grads, direction))
        assert abs(numeric) > 1e-4  # not vacuous
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-10)


def test_meta_gradient_of_the_real_supernet_matches_finite_differences(float64):
    """The same check on Cream's supernet (stem, depthwise-separable and inverted-residual blocks
    with squeeze-excite and swish, head), in float64 at 16 px."""
    from lib.models import build_supernet

    paddle.seed(0)
    rng = np.random.RandomState(0)
    supernet, sta_num, _ = build_supernet(0, 100, num_classes=CLASSES, slice=SLICE)
    supernet.train()
    for p in supernet.meta_parameters():
        p.set_value(rng.randn(*p.shape))
    board = PrioritizedBoard(pool_size=2, flops_minimum=0, flops_maximum=1000)
    for choice, prec1 in ((2, 60.0), (5, 50.0)):
        logits = rng.randn(SLICE, CLASSES)
        board.consider([[0]] + [[choice]] * 5 + [[0]], prec1, 10.0, 1.0, paddle.to_tensor(rng.randn(SLICE, 3, 16, 16)),
                       paddle.to_tensor(np.exp(logits) / np.exp(logits).sum(1, keepdims=True)))
    images = paddle.to_tensor(rng.randn(2 * SLICE, 3, 16, 16))
    targets = paddle.to_tensor(rng.randint(0, CLASSES, 2 * SLICE))
    student = [[0], [1], [0], [3], [4], [1], [0]]
    meta = MetaMatchingNetwork(SLICE)
    loss_fn = LabelSmoothingCrossEntropy(0.1)
    grads, info = meta.meta_gradients(supernet, images, targets, student, board, loss_fn, 0.5)
    theta = supernet.meta_parameters()
    start = [p.numpy().copy() for p in theta]
    direction = [rng.randn(*p.shape) for p in theta]

    def val_loss_at(eps):
        for p, p0, d in zip(theta, start, direction):
            p.set_value(p0 + eps * d)
        return meta.meta_gradients(supernet, images, targets, student, board, loss_fn, 0.5)[1].val_loss

    eps = 1e-6
    numeric = (val_loss_at(eps) - val_loss_at(-eps)) / (2 * eps)
    analytic = sum(float((g.numpy() * d).sum()) for g, d in zip(grads, direction))
    assert abs(numeric) > 1e-5
    assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-10)


def _meta_gradients_with_every_entry_graph(model, images, targets, board, loss_fn, lr):
    """The reference's order of work: every entry's score keeps its graph, so both backward
    passes also run through the entries that are not the teacher (with zero gradients)."""
    x_train, x_val, y_val = images[:SLICE], images[SLICE:2 * SLICE], targets[SLICE:2 * SLICE]
    params = [p for p in model.path_parameters(STUDENT) if not p.stop_gradient]
    with layer_modes(model, second_order=True):
        scores = matching_scores(model, STUDENT, board)
        index = int(np.argmax(scores.numpy()))
        student = model(x_train, STUDENT)
        with paddle.no_grad():
            teacher = softmax(model(x_train, board.entries[index].arch), axis=-1)
        kd = paddle.nn.functional.sigmoid(scores[index]) * soft_target_cross_entropy(student, teacher)
        grads = paddle.grad(kd, params, create_graph=True, allow_unused=True)
        with simulated_step(model, params, grads, lr):
            val_loss = loss_fn(model(x_val, STUDENT), y_val)
        return index, paddle.grad(val_loss, list(model.meta_parameters()))


def test_only_the_teachers_entry_keeps_a_graph_with_the_same_result(float64):
    """The update rebuilds the graph of the chosen entry alone: the meta gradient and the running
    statistics end as with every entry's graph kept (the reference's way)."""
    model, board, images, targets, _ = _setup(2)
    _patch_arch(model)
    loss_fn = LabelSmoothingCrossEntropy(0.1)
    start = _running_statistics(model)
    index, expected = _meta_gradients_with_every_entry_graph(model, images, targets, board, loss_fn, 0.5)
    expected_statistics = _running_statistics(model)
    for k, v in start.items():
        model.state_dict()[k].set_value(v)
    grads, info = MetaMatchingNetwork(SLICE).meta_gradients(model, images, targets, STUDENT, board,
                                                            loss_fn, 0.5)
    assert info.teacher_index == index
    assert max(float(g.abs().max()) for g in grads) > 1e-4
    for got, want in zip(grads, expected):  # the teacher and the board's scores come from the
        # first-order kernels (fused batch norm): float64 rounding, amplified
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-7, atol=1e-12)
    for k, v in _running_statistics(model).items():
        # (Paddle's fused kernel holds the momentum in float32: 3e-7 relative in float64)
        np.testing.assert_allclose(v, expected_statistics[k], rtol=1e-6, atol=1e-12, err_msg=k)
        assert not np.allclose(v, start[k]) or "blocks" in k  # the path's statistics did move


def test_meta_gradient_comes_through_the_simulated_step(float64):
    """With lr = 0 the simulated weights equal the real ones: the validation loss no longer
    depends on the meta layer and its gradient is exactly zero."""
    model, board, images, targets, _ = _setup(1)
    _patch_arch(model)
    meta = MetaMatchingNetwork(SLICE)
    grads, _ = meta.meta_gradients(model, images, targets, STUDENT, board, LabelSmoothingCrossEntropy(0.0), 0.0)
    assert all(float(g.abs().max()) == 0.0 for g in grads)
    grads, _ = meta.meta_gradients(model, images, targets, STUDENT, board, LabelSmoothingCrossEntropy(0.0), 0.3)
    assert max(float(g.abs().max()) for g in grads) > 1e-4


def test_teacher_is_the_highest_matching_score():
    model, board, images, targets, _ = _setup(2)
    _patch_arch(model)
    meta = MetaMatchingNetwork(SLICE)
    with paddle.no_grad():
        scores = matching_scores(model, STUDENT, board).numpy()
    index, rho = meta.select_teacher(model, STUDENT, board, "meta")
    assert index == int(np.argmax(scores))
    assert rho == pytest.approx(1 / (1 + np.exp(-scores.max())), rel=1e-5)
    assert meta.select_teacher(model, STUDENT, board, "top1") == (0, 0.5)


def test_update_moves_the_meta_layer_and_nothing_else():
    model, board, images, targets, _ = _setup(3)
    _patch_arch(model)
    meta_ids = {id(p) for p in model.meta_parameters()}
    # trainable only: Paddle's BatchNorm running statistics are (frozen) parameters too
    others = [p for p in model.parameters() if id(p) not in meta_ids and not p.stop_gradient]
    lr, meta_lr = 0.1, 0.02
    optimizer = paddle.optimizer.Momentum(
        learning_rate=lr, momentum=0.9, use_nesterov=True,
        parameters=[{"params": others, "weight_decay": 1e-4},
                    {"params": list(model.meta_parameters()), "weight_decay": 0.0,
                     "learning_rate": meta_lr / lr}])
    loss_fn = LabelSmoothingCrossEntropy(0.1)
    meta = MetaMatchingNetwork(SLICE, clip_norm=1e-3)  # a tiny clip norm, so clipping is active
    expected_grads, _ = meta.meta_gradients(model, images, targets, STUDENT, board, loss_fn, lr)
    before_meta = [p.numpy().copy() for p in model.meta_parameters()]
    before_others = [p.numpy().copy() for p in others]

    info = meta.update(model, optimizer, images, targets, STUDENT, board, loss_fn, lr)

    norm = np.sqrt(sum(float((g * g).sum()) for g in expected_grads))
    assert info.grad_norm == pytest.approx(norm, rel=1e-4) and norm > 1e-3
    for p, p0, g in zip(model.meta_parameters(), before_meta, expected_grads):
        # first Nesterov step: theta -= meta_lr * (1 + momentum) * clipped grad
        step = meta_lr * 1.9 * g.numpy() * (1e-3 / (norm + 1e-6))
        np.testing.assert_allclose(p.numpy(), p0 - step, rtol=1e-3, atol=1e-9)
        assert np.abs(p.numpy() - p0).max() > 0
    for p, p0 in zip(others, before_others):
        np.testing.assert_array_equal(p.numpy(), p0)
    assert all(p.grad is None for p in model.parameters())


def test_simulated_step_swaps_and_restores():
    model, _, images, _, _ = _setup(4)
    params = model.path_parameters(STUDENT)
    grads = [paddle.ones_like(p) for p in params]
    before = model(images, STUDENT).numpy()
    with pytest.raises(RuntimeError):
        with simulated_step(model, params, grads, 0.1):
            assert not np.allclose(model(images, STUDENT).numpy(), before)
            raise RuntimeError("interrupted")
    assert all(a is b for a, b in zip(model.path_parameters(STUDENT), params))
    np.testing.assert_allclose(model(images, STUDENT).numpy(), before, rtol=1e-6)


def test_batch_too_small_for_the_meta_step():
    model, board, images, targets, _ = _setup(5)
    _patch_arch(model)
    with pytest.raises(ValueError, match="BATCH_SIZE"):
        MetaMatchingNetwork(SLICE).meta_gradients(model, images[:3], targets[:3], STUDENT, board,
                                                  LabelSmoothingCrossEntropy(0.0), 0.1)


def _running_statistics(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items() if k.endswith(("_mean", "_variance"))}


def test_an_entry_is_scored_with_its_own_batch_statistics():
    """An entry's score is the same whatever else is on the board, and the running statistics
    end as after the reference's one forward pass per entry, in board order."""
    model, board, _, _, _ = _setup(6)
    _patch_arch(model)
    start = _running_statistics(model)
    with paddle.no_grad():
        scores = matching_scores(model, STUDENT, board).numpy()
    after_scoring = _running_statistics(model)
    for k, v in start.items():
        model.state_dict()[k].set_value(v)
    entries = board.entries
    with paddle.no_grad():
        for i, entry in enumerate(entries):
            alone = PrioritizedBoard(pool_size=4, flops_minimum=0, flops_maximum=100)
            alone.consider(entry.arch, entry.prec1, entry.flops, entry.params, entry.images, entry.features)
            np.testing.assert_allclose(matching_scores(model, STUDENT, alone).numpy(), scores[i:i + 1],
                                       rtol=1e-5, atol=1e-6)
    for k, v in _running_statistics(model).items():
        np.testing.assert_allclose(v, after_scoring[k], rtol=1e-5, atol=1e-7, err_msg=k)
    assert not np.allclose(after_scoring["bn1._variance"], start["bn1._variance"])  # they did move
