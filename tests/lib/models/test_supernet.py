"""The supernet: reference parameter names, path forward == child net, path/meta parameters."""
import re

import numpy as np
import paddle
import pytest

from lib.models import SuperNet, build_childnet, build_supernet, effective_arch, layer_flops_table
from pimm.layers import layer_modes
from pimm.models import load_checkpoint, load_model_weights
from tests.pimm.models.paddle_to_torch import torch_state_dict
from tests.pimm.models.torchfile_writer import save_legacy

SMALL_STA_NUM = [1, 2, 1, 2, 2]


def _small_supernet(num_classes=10, **kwargs):
    with paddle.utils.unique_name.guard():
        return SuperNet(SMALL_STA_NUM, num_classes=num_classes, **kwargs)


def _randomize(model, seed=0):
    """Random weights and batch-norm statistics, so that every tensor matters in a comparison."""
    rng = np.random.RandomState(seed)
    state = {}
    for name, value in model.state_dict().items():
        values = rng.uniform(0.5, 1.5, value.shape) if name.endswith("_variance") else rng.normal(0, 0.2, value.shape)
        state[name] = values.astype("float32")
    model.set_state_dict(state)


def test_published_space_names_and_shapes(supernet_600):
    model, sta_num, resolution = supernet_600
    assert (sta_num, resolution) == ([4, 4, 4, 4, 4], 224)
    # stage 3 builds a fifth layer (the reference's 'ir_r2' template) that no path uses
    assert [len(stage) for stage in model.blocks] == [1, 4, 4, 5, 4, 4, 1]
    assert [len(stage[0]) for stage in model.blocks] == [1, 6, 6, 6, 6, 6, 1]
    state = model.state_dict()
    choice_blocks = {m.group(1) for m in map(re.compile(r"(blocks\.\d+\.\d+\.\d+)\.").match, state) if m}
    assert len(choice_blocks) == 1 + 21 * 6 + 1
    shapes = {
        "conv_stem.weight": [16, 3, 3, 3],
        "blocks.0.0.0.conv_dw.weight": [16, 1, 3, 3],
        "blocks.0.0.0.se.conv_reduce.weight": [8, 16, 1, 1],
        "blocks.1.0.3.conv_dw.weight": [96, 1, 5, 5],  # 16 in, choice 3 = k5e6
        "blocks.1.3.0.conv_pw.weight": [96, 24, 1, 1],  # choice 0 = k3e4 on 24 channels
        "blocks.3.4.5.conv_dw.weight": [480, 1, 7, 7],  # the unused fifth layer, choice 5 = k7e6
        "blocks.3.4.5.bn3._variance": [80],
        "blocks.5.0.4.conv_pwl.weight": [192, 384, 1, 1],  # 96 in, e4
        "blocks.6.0.0.conv.weight": [320, 192, 1, 1],
        "conv_head.bias": [1280],
        "classifier.weight": [1280, 1000],  # Paddle Linear layout [in, out]
        "meta_layer.weight": [4000, 1],  # num_classes * slice -> 1
        "meta_layer.bias": [1],
    }
    assert {name: list(state[name].shape) for name in shapes} == shapes
    assert not any("blocks.3.5." in name or "blocks.1.4." in name for name in state)


def test_small_ranges_and_options():
    model, sta_num, resolution = build_supernet(0, 100, num_classes=5, slice=3, bn_eps=1e-3)
    assert (sta_num, resolution) == ([1, 1, 1, 1, 1], 224)
    assert [len(stage) for stage in model.blocks] == [1] * 7
    assert model.meta_layer.weight.shape == [15, 1] and model.bn1._epsilon == 1e-3
    assert build_supernet(0, 50, num_classes=5)[1:] == ([1, 1, 1, 1, 1], 160)
    with pytest.raises(ValueError, match="SUPERNET.RESUNIT is not supported"):
        build_supernet(resunit=True)
    with pytest.raises(ValueError, match="SUPERNET.RESUNIT and SUPERNET.DIL_CONV is not supported"):
        build_supernet(resunit=True, dil_conv=True)
    with pytest.raises(ValueError, match=r"impossible.*FLOPS_MAXIMUM must be at least 2\.791"):
        build_supernet(0, 1)


def _copy_path_into_child(supernet, child, path):
    """Give ``child`` the supernet's weights along ``path`` (its -1 layers removed)."""
    state = {name: value for name, value in supernet.state_dict().items()
             if not name.startswith(("blocks.", "meta_layer."))}
    for stage, choices in enumerate(path):
        kept = [(layer, choice) for layer, choice in enumerate(choices) if choice != -1]
        for child_layer, (layer, choice) in enumerate(kept):
            prefix = f"blocks.{stage}.{layer}.{choice}."
            state.update({f"blocks.{stage}.{child_layer}.{name[len(prefix):]}": value
                          for name, value in supernet.state_dict().items() if name.startswith(prefix)})
    assert load_model_weights(child, state) == ([], [])  # strict: names and shapes


@pytest.mark.parametrize("child_arch", [
    [[0], [4], [2, 5], [3], [0, 3], [1, 4], [0]],
    [[0], [5], [0, 1], [2], [5, 5], [3, 0], [0]],
])
@pytest.mark.parametrize("exact", [False, True])
def test_path_forward_equals_the_child_net_with_the_same_weights(child_arch, exact):
    supernet = _small_supernet()
    _randomize(supernet)
    supernet.eval()
    # the reference's child net keeps single-layer stages at their template block: follow the same
    # path; an exact child net (a board path's) is the listed path itself
    path = effective_arch(child_arch, exact)
    assert (path == child_arch) == exact  # both archs have single-layer stages off their template
    child = build_childnet(child_arch, num_classes=10, exact=exact)
    _copy_path_into_child(supernet, child, path)
    child.eval()
    x = paddle.to_tensor(np.random.RandomState(1).randn(2, 3, 48, 48).astype("float32"))
    logits = supernet(x, path).numpy()
    np.testing.assert_allclose(logits, child(x).numpy(), rtol=1e-5, atol=1e-5)
    with layer_modes(supernet, second_order=True):  # the meta-matching step runs paths so
        np.testing.assert_allclose(supernet(x, path).numpy(), logits, rtol=1e-4, atol=1e-4)


def test_skipped_layer_is_not_run():
    supernet = _small_supernet()
    _randomize(supernet, seed=2)
    supernet.eval()
    # stages 2 and 4 keep one layer: the child net builds them from their templates (choices 2, 1)
    path = [[0], [0], [2, -1], [1], [1, -1], [2, 2], [0]]
    child = build_childnet([[0], [0], [2], [1], [1], [2, 2], [0]], num_classes=10)
    _copy_path_into_child(supernet, child, path)
    child.eval()
    x = paddle.to_tensor(np.random.RandomState(3).randn(1, 3, 32, 32).astype("float32"))
    np.testing.assert_allclose(supernet(x, path).numpy(), child(x).numpy(), rtol=1e-5, atol=1e-5)


def test_path_parameters_are_exactly_those_that_get_gradients():
    supernet = _small_supernet(num_classes=4)
    arch = [[0], [2], [5, -1], [0], [3, 1], [4, -1], [0]]
    params = supernet.path_parameters(arch)
    names = {id(p): name for name, p in supernet.named_parameters()}
    assert [names[id(p)] for p in params[:7]] == [
        "conv_stem.weight", "bn1.weight", "bn1.bias", "conv_head.weight", "conv_head.bias",
        "classifier.weight", "classifier.bias"]
    # 10 (depthwise-separable) + 13 per inverted residual on the path (6 of them) + 3 (ConvBnAct)
    assert len(params) == 7 + 10 + 6 * 13 + 3
    assert [names[id(p)] for p in params[7:18]] == [
        "blocks.0.0.0.conv_dw.weight", "blocks.0.0.0.bn1.weight", "blocks.0.0.0.bn1.bias",
        "blocks.0.0.0.se.conv_reduce.weight", "blocks.0.0.0.se.conv_reduce.bias",
        "blocks.0.0.0.se.conv_expand.weight", "blocks.0.0.0.se.conv_expand.bias",
        "blocks.0.0.0.conv_pw.weight", "blocks.0.0.0.bn2.weight", "blocks.0.0.0.bn2.bias",
        "blocks.1.0.2.conv_pw.weight"]
    assert names[id(params[-1])] == "blocks.6.0.0.bn1.bias"
    assert supernet.path_parameters(arch) == params  # deterministic

    supernet.train()
    supernet(paddle.randn([2, 3, 32, 32]), arch).sum().backward()
    with_grad = {id(p) for p in supernet.parameters() if p.grad is not None}
    assert with_grad == {id(p) for p in params}
    assert supernet.meta_parameters() == [supernet.meta_layer.weight, supernet.meta_layer.bias]


def test_aligned_init_starts_every_candidate_as_the_same_function():
    model, sta_num, _ = build_supernet(0, 150, num_classes=4, aligned_init=True)
    assert sta_num == [1, 1, 2, 1, 1]  # a stride-1 second layer in stage 3 too
    model.train()
    x = paddle.randn([6, 3, 32, 32])
    reference = model(x, [[0], [0], [0], [0, 0], [0], [0], [0]]).numpy()
    for choice in range(1, 6):
        arch = [[0], [choice], [choice], [choice, choice], [choice], [choice], [0]]
        np.testing.assert_allclose(model(x, arch).numpy(), reference, rtol=1e-4, atol=1e-5)
    # the larger candidates' extra weights are still their own random ones, and they learn: the
    # weights reading the extra channels (zero at first) get gradients
    big = model.blocks[2][0][5]  # 7x7 kernel, expansion 6
    assert float(paddle.abs(big.conv_pw.weight[96:]).sum()) > 0
    model(x, [[0], [5], [5], [5, 5], [5], [5], [0]]).sum().backward()
    assert float(paddle.abs(big.conv_pwl.weight.grad[:, 96:]).sum()) > 0
    assert float(paddle.abs(big.conv_dw.weight.grad[:96, :, 0]).sum()) > 0  # outside the 3x3 centre
    # without it, the candidates are unrelated functions
    plain, _, _ = build_supernet(0, 150, num_classes=4)
    plain.train()
    outs = [plain(x, [[0], [c], [c], [c, c], [c], [c], [0]]).numpy() for c in (0, 5)]
    assert np.abs(outs[0] - outs[1]).max() > 1e-2


def test_zero_classifier_starts_at_uniform_predictions():
    model, _, _ = build_supernet(0, 100, num_classes=10, zero_classifier=True)
    logits = model(paddle.randn([3, 3, 32, 32]), [[0]] * 7).numpy()
    np.testing.assert_array_equal(logits, np.zeros_like(logits))
    child = build_childnet([[0], [1], [1], [1], [1], [1], [0]], num_classes=10, zero_classifier=True)
    assert not np.any(child.classifier.weight.numpy())
    assert np.any(build_childnet([[0], [1], [1], [1], [1], [1], [0]], num_classes=10).classifier.weight.numpy())


def test_forward_meta_flattens_the_features():
    supernet = _small_supernet(num_classes=3, slice=2)
    features = paddle.rand([2, 3])
    expected = features.reshape([1, 6]) @ supernet.meta_layer.weight + supernet.meta_layer.bias
    np.testing.assert_allclose(supernet.forward_meta(features).numpy(), expected.numpy(), rtol=1e-6)


def test_bad_arch_names_the_problem():
    supernet = _small_supernet()
    x = paddle.zeros([1, 3, 32, 32])
    with pytest.raises(ValueError, match=r"stage 2 lists 3 layers, the supernet has 2"):
        supernet(x, [[0], [0], [0, 0, 0], [0], [0], [0], [0]])
    with pytest.raises(ValueError, match=r"stage 1 has choices \[6\] outside -1\.\.5"):
        supernet(x, [[0], [6], [0], [0], [0], [0], [0]])
    with pytest.raises(ValueError, match=r"stage 4 skips its first layer"):
        supernet(x, [[0], [0], [0], [0], [-1, 0], [0], [0]])
    with pytest.raises(ValueError, match=r"it has 2 stages, the supernet 7"):
        supernet(x, [[0], [0]])


def test_names_and_weights_are_reproducible():
    layer_flops_table.cache_clear()
    paddle.seed(7)
    first = build_supernet(0, 100, num_classes=3)[0]  # measures the FLOPs table on the way
    paddle.seed(7)
    second = build_supernet(0, 100, num_classes=3)[0]  # table cached
    assert [p.name for p in first.parameters()] == [p.name for p in second.parameters()]
    assert len({p.name for p in first.parameters()}) == len(first.parameters())
    for a, b in zip(first.parameters(), second.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_reference_supernet_checkpoint_loads(tmp_path):
    """A supernet state dict in the reference's torch names and layouts (blocks.s.l.c.*, meta_layer
    [1, num_classes * slice]) loads into the Paddle supernet."""
    source = _small_supernet()
    _randomize(source, seed=4)
    weights = torch_state_dict(source, prefix="module.")
    assert weights["module.meta_layer.weight"].shape == (1, 40)
    assert "module.blocks.2.0.5.bn2.running_var" in weights
    path = str(tmp_path / "supernet.pth.tar")
    save_legacy({"epoch": 9, "state_dict": weights}, path)

    target = _small_supernet()
    assert load_checkpoint(target, path) == ([], [])
    np.testing.assert_array_equal(target.meta_layer.weight.numpy(), source.meta_layer.weight.numpy())
    source.eval()
    target.eval()
    x = paddle.to_tensor(np.random.RandomState(5).randn(1, 3, 32, 32).astype("float32"))
    arch = [[0], [1], [4, 2], [3], [0, 5], [2, -1], [0]]
    np.testing.assert_allclose(target(x, arch).numpy(), source(x, arch).numpy(), rtol=1e-6, atol=1e-6)
