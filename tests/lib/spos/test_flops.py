"""SPOS FLOPs: the official search's figures, and the table agrees with the layers really built."""
import paddle
import pytest

from pimm.utils.profile import profile
from lib.spos import (NUM_CHOICES, RELEASED_ARCH, Widths, arch_flops, build_childnet, fixed_flops,
                      layer_flops_table, spos_path_space)
from lib.spos.space import layer_specs

# The official search's get_cand_flops for these paths (224 px, 1000 classes).
OFFICIAL_FLOPS = {
    RELEASED_ARCH: 322_918_720,
    (0,) * 20: 295_842_496,
    (1,) * 20: 313_654_976,
    (2,) * 20: 340_373_696,
    (3,) * 20: 358_825_920,
}


@pytest.mark.parametrize("arch,expected", list(OFFICIAL_FLOPS.items()))
def test_arch_flops_equal_the_official_search(arch, expected):
    assert arch_flops(arch) == expected
    assert arch_flops(list(arch)) == expected


def test_flops_are_additive_per_layer():
    table = layer_flops_table()
    assert len(table) == len(layer_specs()) == 20 and all(len(row) == NUM_CHOICES for row in table)
    arch = (3, 0, 1, 2) * 5
    assert arch_flops(arch) == fixed_flops() + sum(row[c] for row, c in zip(table, arch))
    # changing one layer changes the total by that layer's table difference only
    changed = (0,) + arch[1:]
    assert arch_flops(changed) - arch_flops(arch) == table[0][0] - table[0][3]


def test_arch_flops_refuses_invalid_paths():
    with pytest.raises(ValueError, match="20"):
        arch_flops((0,) * 21)
    with pytest.raises(ValueError, match="outside 0..3"):
        arch_flops((4,) * 20)


# Only convolutions and the classifier count: batch norm and pooling cost nothing.
_CONV_AND_LINEAR_ONLY = {paddle.nn.BatchNorm2D: lambda *_: 0, paddle.nn.AdaptiveAvgPool2D: lambda *_: 0}


@pytest.mark.parametrize("arch", [RELEASED_ARCH, (3, 2, 1, 0) * 5])
def test_table_equals_a_count_of_the_built_network(arch):
    macs, _ = profile(build_childnet(arch), custom_ops=_CONV_AND_LINEAR_ONLY)
    assert macs == arch_flops(arch)


NARROW = Widths((24, 32, 64, 96), 128)


@pytest.mark.parametrize("arch", [RELEASED_ARCH, (3, 2, 1, 0) * 5])
def test_narrower_widths_count_the_network_built_with_them(arch):
    macs, _ = profile(build_childnet(arch, num_classes=10, widths=NARROW), custom_ops=_CONV_AND_LINEAR_ONLY)
    assert macs == arch_flops(arch, num_classes=10, widths=NARROW) < arch_flops(arch) / 10
    assert spos_path_space(NARROW, num_classes=10, flops_unit=1e6).flops(arch) == pytest.approx(macs / 1e6)


@pytest.mark.parametrize("stages, message", [
    ((24, 32, 64), "4 stage widths"),
    ((24, 33, 64, 96), "even"),
    ((16, 32, 64, 96), "wider than its input"),
    ((24, 64, 48, 96), "wider than its input"),
])
def test_invalid_widths_are_refused(stages, message):
    with pytest.raises(ValueError, match=message):
        Widths(stages, 128)
