"""search_for_layer and FlopsEst against the reference's figures (ptflops 0.6 at 224 px)."""
import pytest

from lib.models import PTFLOPS_RULES, FlopsEst, build_childnet, layer_flops_table, search_for_layer
from lib.models.space import layer_block_string, supernet_stage_strings, template_choice
from pimm.utils.profile import profile

# The reference's hard-coded per-layer table (MFLOPs of a searched stage's first layer, of a later
# layer) for choices 0..5, which defines the published search spaces.
REFERENCE_LAYER_FLOPS = (
    ((21.828704, 18.820752), (32.669328, 28.16048), (25.039968, 23.637648), (37.486224, 35.385824),
     (29.856864, 30.862992), (44.711568, 46.22384)),
    ((11.808656, 11.86712), (17.68624, 17.780848), (13.01288, 13.87416), (19.492576, 20.791408),
     (14.819216, 16.88472), (22.20208, 25.307248)),
    ((8.198, 10.99632), (12.292848, 16.5172), (8.69976, 11.99984), (13.045488, 18.02248),
     (9.4524, 13.50512), (14.174448, 20.2804)),
    ((12.006112, 15.61632), (18.028752, 23.46096), (13.009632, 16.820544), (19.534032, 25.267296),
     (14.514912, 18.62688), (21.791952, 27.9768)),
    ((11.307456, 15.292416), (17.007072, 23.1504), (11.608512, 15.894528), (17.458656, 24.053568),
     (12.060096, 16.797696), (18.136032, 25.40832)),
)


def test_templates_and_strings():
    assert [template_choice(stage) for stage in range(7)] == [0, 0, 2, 1, 1, 3, 0]
    assert layer_block_string(3, 5) == "ir_r1_k7_s2_e6_c80_se0.25"
    stages = supernet_stage_strings([4, 1, 4, 2, 3])
    assert [len(s) for s in stages] == [1, 4, 1, 4, 2, 3, 1]
    assert stages[3][-1] == "ir_r2_k3_s2_e6_c80_se0.25"  # four layers in stage 3: the last repeats
    assert supernet_stage_strings([4, 4, 3, 4, 4])[3] == ["ir_r1_k3_s2_e6_c80_se0.25"] * 3
    with pytest.raises(ValueError, match="between 1 and 4"):
        supernet_stage_strings([5, 1, 1, 1, 1])


def test_measured_layer_table_is_the_reference_table():
    # first-layer entries checked by hand, e.g. stage 1 choice 0 (16 -> 64 -> 24 ch, 112 -> 56 px):
    # pw 12845056 + bn 1605632 + dw 1806336 + bn 401408 + pool 200704 + se 1040+16+1088
    # + pwl 4816896 + bn 150528 = 21828704
    assert layer_flops_table() == REFERENCE_LAYER_FLOPS


@pytest.mark.parametrize("flops_range, expected", [
    ((0, 600), ([4, 4, 4, 4, 4], 224)),
    ((0, 400), ([2, 2, 4, 4, 3], 224)),
    ((0, 100), ([1, 1, 1, 1, 1], 224)),
    ((0, 50), ([1, 1, 1, 1, 1], 160)),
    # 65.149 MFLOPs for the smallest path: 2.8 fits only after five compounded rescalings
    # (2.8 * 7/6 * 7/5 * 7/4 * 7/3 * 7/2 = 65.36)
    ((0, 2.8), ([1, 1, 1, 1, 1], 64)),
    # the largest single-layer path (121.016) is below 150: stage 3 first grows to reach the minimum
    # (+2 x 20.2804), then layers are added in order while <= 300: stage 4 x2 (+27.9768 each),
    # stage 5 x2 (+25.40832), stage 2 (+25.307248 -> 293.654); stage 1 (+46.22384) would exceed it
    ((150, 300), ([1, 2, 3, 3, 3], 224)),
    ((500, 600), ([4, 4, 4, 4, 4], 224)),
])
def test_search_for_layer_examples(flops_range, expected):
    assert search_for_layer(*flops_range, layer_flops_table()) == expected
    assert search_for_layer(*flops_range, layer_flops=REFERENCE_LAYER_FLOPS) == expected


@pytest.mark.parametrize("flops_range, fragment", [
    ((0, 2.7), "FLOPS_MAXIMUM must be at least 2.791"),
    ((557, 700), "FLOPS_MINIMUM at most 556.606"),
    ((300, 200), "is reversed"),
])
def test_impossible_ranges_say_what_is_possible(flops_range, fragment):
    with pytest.raises(ValueError, match=f"{flops_range[0]}, {flops_range[1]}.*{fragment}"):
        search_for_layer(*flops_range, REFERENCE_LAYER_FLOPS)


@pytest.fixture(scope="module")
def estimator(supernet_600):
    model = supernet_600[0]
    model.train()
    est = FlopsEst(model)
    assert model.training and model.blocks[1][0][0].bn1.training  # flags restored
    return est


def test_fixed_parts_and_table_entries(estimator):
    # conv_stem 5419008 + global pool over 320x7x7 15680 + conv_head 320*1280 + 1280 bias
    assert estimator.flops_fixed == pytest.approx(5.845568, abs=1e-9)
    assert estimator.params_fixed == pytest.approx(0.411312, abs=1e-9)
    # the depthwise-separable stage at 112 px: dw 1806336 + bn 401408 + pool 200704 + se 136+8+144
    # + pw 3211264 + bn 401408; params 144 + 32 + 280 + 256 + 32
    assert estimator.flops_dict[0][0][0] == pytest.approx(6.021408, abs=1e-9)
    assert estimator.params_dict[0][0][0] == pytest.approx(0.000744, abs=1e-12)
    # ConvBnAct 192 -> 320 at 7 px: 49*192*320 + 2*320*49
    assert estimator.flops_dict[6][0][0] == pytest.approx(3.04192, abs=1e-9)
    for stage in range(1, 6):
        for choice in range(6):
            assert estimator.flops_dict[stage][0][choice] == REFERENCE_LAYER_FLOPS[stage - 1][choice][0]
            assert estimator.flops_dict[stage][3][choice] == REFERENCE_LAYER_FLOPS[stage - 1][choice][1]
    assert sorted(estimator.flops_dict[3]) == [0, 1, 2, 3, 4]  # the unused layer is measured too


def test_path_flops_and_params(estimator):
    smallest = [[0], [0], [0], [0], [0], [0], [0]]
    expected = 5.845568 + 6.021408 + sum(row[0][0] for row in REFERENCE_LAYER_FLOPS) + 3.04192
    assert estimator.get_flops(smallest) == pytest.approx(expected, abs=1e-6)
    arch = [[0], [5, 5, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5], [0]]
    searched = sum(row[5][0] + 3 * row[5][1] for row in REFERENCE_LAYER_FLOPS)
    assert searched == pytest.approx(556.605904)  # the largest path the [0, 600] space allows
    assert estimator.get_flops(arch) == pytest.approx(5.845568 + 6.021408 + searched + 3.04192, abs=1e-6)
    skipped = [[0], [5, -1, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5], [0]]
    assert estimator.get_flops(arch) - estimator.get_flops(skipped) == pytest.approx(46.22384)


def test_path_figures_equal_the_child_net_counted_alike(estimator):
    # every searched stage has two layers, so the child net builds exactly these choices
    arch = [[0], [1, 2], [3, 4], [5, 0], [1, 1], [2, 3], [0]]
    child = build_childnet(arch)
    flops, params = profile(child, (1, 3, 224, 224), custom_ops=PTFLOPS_RULES)
    # FlopsEst leaves out the stem batch norm (2*16*112*112) and the classifier (1280 -> 1000)
    assert estimator.get_flops(arch) * 1e6 == pytest.approx(flops - 401_408 - 1_280_000, abs=1e-3)
    assert estimator.get_params(arch) * 1e6 == pytest.approx(params - 32 - 1_281_000, abs=1e-3)
