"""Cream's child networks: structure, registry, the reference's FLOPs/params, and logits parity
with the released-format checkpoint."""
import os

import numpy as np
import paddle
import pytest

from lib.models import CREAM_ARCHS, build_childnet, childnet_arch_def, effective_arch
from pimm.models import MobileNetV3, create_model, list_models, load_checkpoint, model_entrypoint
from pimm.utils.torch_checkpoint import (extract_state_dict, read_torch_checkpoint,
                                          torch_to_paddle_state_dict)
from pimm.utils.profile import profile


def test_single_layer_stages_keep_their_template_block():
    # 14 lists choice 3 (k5e6) for stages 1, 4 and 5; the reference builds their templates
    # (k3e4, k3e6, k5e6). Stages with two layers take the listed choice.
    assert effective_arch(14) == [[0], [0], [3, 3], [3, 3], [1], [3], [0]]
    assert childnet_arch_def(14) == [
        ["ds_r1_k3_s1_e1_c16_se0.25"], ["ir_r1_k3_s2_e4_c24_se0.25"],
        ["ir_r1_k5_s2_e6_c40_se0.25"] * 2, ["ir_r1_k5_s2_e6_c80_se0.25"] * 2,
        ["ir_r1_k3_s1_e6_c96_se0.25"], ["ir_r1_k5_s2_e6_c192_se0.25"], ["cn_r1_k1_s1_c320"]]
    # 481 and 604 have no single-layer searched stage: their lists are built as written
    assert effective_arch(481) == CREAM_ARCHS[481].arch_list()
    assert effective_arch(604) == CREAM_ARCHS[604].arch_list()


def test_blocks_follow_the_choices():
    model = build_childnet([[0], [5, 0], [2], [4, 1, 3], [0, 0], [1, 2], [0]], num_classes=10)
    assert isinstance(model, MobileNetV3)
    stage1, stage3 = model.blocks[1], model.blocks[3]
    # choice 5 = k7e6 on 16 input channels (mid 96), stride 2; choice 0 = k3e4 on 24 (mid 96), stride 1
    assert stage1[0].conv_dw.weight.shape == [96, 1, 7, 7] and stage1[0].conv_dw._stride == [2, 2]
    assert stage1[1].conv_dw.weight.shape == [96, 1, 3, 3] and stage1[1].conv_dw._stride == [1, 1]
    assert model.blocks[2][0].conv_dw.weight.shape == [96, 1, 5, 5]  # single layer: template k5e4
    assert [b.conv_dw.weight.shape[2] for b in stage3] == [7, 3, 5]
    assert [b.conv_pw.weight.shape[0] for b in stage3] == [160, 480, 480]  # 40*4, 80*6, 80*6
    model.eval()
    assert model(paddle.randn([2, 3, 32, 32])).shape == [2, 10]


@pytest.mark.parametrize("selection", sorted(CREAM_ARCHS))
def test_flops_and_params_match_the_reference(selection):
    entry = CREAM_ARCHS[selection]
    macs, params = profile(create_model(f"cream_{selection}"), (1, 3, entry.image_size, entry.image_size))
    assert macs / 1e6 == pytest.approx(entry.mflops, rel=1e-3)
    assert params / 1e6 == pytest.approx(entry.mparams, rel=1e-3)
    if selection == 14:  # the unrounded figures the reference logged for the fixture checkpoint
        assert (macs, params) == (13_848_832, 2_673_096)


def test_registry_entries_and_options():
    assert list_models("cream_*") == [f"cream_{s}" for s in sorted(CREAM_ARCHS)]
    model = create_model("cream_43", num_classes=7, drop_rate=0.2, bn_momentum=0.01, global_pool="max")
    assert model.classifier.weight.shape == [1280, 7] and model.drop_rate == 0.2
    assert model.bn1._momentum == pytest.approx(0.99)  # torch convention 0.01 = Paddle 0.99
    assert model.global_pool.pool_type == "max"
    assert "published top-1 66.3" in model_entrypoint("cream_43").__doc__


def test_parameter_names_are_stable_across_builds():
    first, second = build_childnet(14, num_classes=3), build_childnet(14, num_classes=3)
    assert [p.name for p in first.parameters()] == [p.name for p in second.parameters()]


def test_bad_selection_names_the_released_ones():
    with pytest.raises(ValueError, match=r"released ones are \[14, 43, 114, 287, 481, 604\]"):
        build_childnet(470)


def _relative_error(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def released_checkpoint(cream14_dir):
    return read_torch_checkpoint(os.path.join(cream14_dir, "14.pth.tar"))


def test_names_and_shapes_match_the_released_checkpoint(released_checkpoint):
    model = build_childnet(14)
    torch_weights = released_checkpoint["state_dict"]
    assert len(torch_weights) == 186
    expected = torch_to_paddle_state_dict(extract_state_dict(released_checkpoint), model)
    actual = model.state_dict()
    assert list(actual) == list(expected)  # same names in the same order
    assert all(list(actual[k].shape) == list(v.shape) for k, v in expected.items())


@pytest.mark.parametrize("use_ema, logits_file", [(False, "logits.npy"), (True, "logits_ema.npy")])
def test_logits_match_the_reference(cream14_dir, use_ema, logits_file):
    model = build_childnet(14)
    assert load_checkpoint(model, os.path.join(cream14_dir, "14.pth.tar"), use_ema=use_ema) == ([], [])
    model.eval()
    logits = model(paddle.to_tensor(np.load(os.path.join(cream14_dir, "input.npy")))).numpy()
    assert _relative_error(logits, np.load(os.path.join(cream14_dir, logits_file))) <= 1e-5


def test_exact_child_network_is_the_supernet_path():
    """``exact=True`` builds every listed choice, single-layer stages included: with the supernet's
    weights of the path it computes the same logits as the supernet running that path."""
    import re

    from lib.models import build_supernet

    arch = [[0], [5], [2], [4], [1], [3], [0]]  # the [0, 100] space: one layer per searched stage
    assert effective_arch(arch) != arch and effective_arch(arch, exact=True) == arch
    paddle.seed(1)
    supernet, _, _ = build_supernet(0, 100, num_classes=5)
    child = build_childnet(arch, num_classes=5, exact=True)
    weights = supernet.state_dict()

    def supernet_name(name):
        m = re.match(r"blocks\.(\d+)\.(\d+)\.(.*)", name)
        return f"blocks.{m[1]}.{m[2]}.{arch[int(m[1])][int(m[2])]}.{m[3]}" if m else name

    child.set_state_dict({k: weights[supernet_name(k)] for k in child.state_dict()})
    with paddle.no_grad():
        supernet.classifier.weight.set_value(supernet.classifier.weight * 300.0)  # decisive logits
        child.classifier.weight.set_value(supernet.classifier.weight)
    supernet.eval()
    child.eval()
    x = paddle.randn([2, 3, 64, 64])
    expected = supernet(x, arch).numpy()
    assert abs(expected).max() > 0.1
    np.testing.assert_allclose(child(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    # the reference's child network (template blocks in single-layer stages) is another network
    assert sum(int(p.size) for p in build_childnet(arch, num_classes=5).parameters()) != \
        sum(int(p.size) for p in child.parameters())
