"""P-DARTS stage logic: stage plan, skip-connect dropout schedule, pruning, final genotype."""
import math

import numpy as np
import paddle
import pytest

from lib.darts import PRIMITIVES, derive_genotype, full_switches, plan_stages, prune_switches, skip_dropout_rate

SEP, SKIP, NONE = "sep_conv_3x3", "skip_connect", "none"


def _switches(ops):
    return [[name in ops for name in PRIMITIVES] for _ in range(14)]


# Every edge has (none, skip_connect, sep_conv_3x3) in play; alphas in that column order.
THREE = _switches({NONE, SKIP, SEP})
ALPHAS = np.array([
    [0, 1, 0],    # 0  node 0, input 0: skip (weight e/(2+e) = 0.576)
    [0, 0, 1],    # 1  node 0, input 1: sep
    [0, 0, 2],    # 2  node 1: three equal scores, the two later edges win
    [0, 0, 2],    # 3
    [0, 0, 2],    # 4
    [0, 0, 3],    # 5  node 2: sep 0.909, then three equal skips (0.787)
    [0, 2, 0],    # 6
    [0, 2, 0],    # 7
    [0, 2, 0],    # 8
    [0, 1, 1],    # 9  node 3: skip and sep tie on the edge: the later op (sep), 0.422
    [0, 3, 0],    # 10 skip 0.909
    [0, 0, 0],    # 11 sep (later op on the tie), 0.333
    [0, 2.5, 0],  # 12 skip 0.859
    [0, 0, 0.5],  # 13 sep 0.452
], dtype=np.float32)


def test_derive_genotype_picks_ops_and_edges_with_ties_to_the_later():
    genotype = derive_genotype(ALPHAS, ALPHAS, THREE, THREE, max_skip=8)
    expected = ((SKIP, 0), (SEP, 1), (SEP, 1), (SEP, 2), (SEP, 0), (SKIP, 3), (SKIP, 1), (SKIP, 3))
    assert genotype.normal == expected and genotype.reduce == expected
    assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)
    assert derive_genotype(ALPHAS, ALPHAS, THREE, THREE, max_skip=4) == genotype  # 4 skips: within the limit


def test_skip_connects_are_limited_in_the_normal_cell_only():
    unlimited = derive_genotype(ALPHAS, ALPHAS, THREE, THREE, max_skip=8)
    # 3: the weakest kept skip (edge 0, 0.576) goes; node 0 keeps both edges, now sep on input 0
    assert derive_genotype(ALPHAS, ALPHAS, THREE, THREE, max_skip=3).normal == (
        (SEP, 0), (SEP, 1), (SEP, 1), (SEP, 2), (SEP, 0), (SKIP, 3), (SKIP, 1), (SKIP, 3))
    # 2: edge 8's skip goes, node 2 takes the next equal skip (edge 7), which goes, then edge 6's;
    # node 2 ends with edge 5 and, of three equal seps, the latest (edge 8)
    two = derive_genotype(ALPHAS, ALPHAS, THREE, THREE, max_skip=2)
    assert two.normal == ((SEP, 0), (SEP, 1), (SEP, 1), (SEP, 2), (SEP, 0), (SEP, 3), (SKIP, 1), (SKIP, 3))
    # 0: edge 12's skip (0.859) goes, then edge 10's; node 3 keeps its best seps (edges 13 and 9)
    zero = derive_genotype(ALPHAS, ALPHAS, THREE, THREE, max_skip=0)
    assert zero.normal == ((SEP, 0), (SEP, 1), (SEP, 1), (SEP, 2), (SEP, 0), (SEP, 3), (SEP, 0), (SEP, 4))
    assert two.reduce == zero.reduce == unlimited.reduce
    assert sum(op == SKIP for op, _ in zero.reduce) == 4


def test_none_never_chosen_but_weakens_its_edge():
    alphas = ALPHAS.copy()
    alphas[11] = [5, 0, 0.1]  # 'none' dominates edge 11: its sep scores ~0.007
    alphas[13] = [0, 0, 0]    # edge 13 drops to 0.333; node 3: edges 10, 12 stay the best two
    alphas[9] = [9, 0, 0]     # all 'none': the sep (later op) is chosen, score tiny
    genotype = derive_genotype(alphas, alphas, THREE, THREE, max_skip=1)
    assert all(op != NONE for op, _ in genotype.normal + genotype.reduce)
    # max_skip 1: edges 0, 8, 7, 6 and 12 lose their skips; node 3 then keeps edges 10 and 13
    # (0.333 beats edge 12's sep 0.07, edge 11's 0.007 and edge 9's 0.0001)
    assert genotype.normal[6:] == ((SKIP, 1), (SEP, 4))


def test_tensor_and_list_inputs_and_errors():
    as_tensor = paddle.to_tensor(ALPHAS)
    assert derive_genotype(as_tensor, ALPHAS.tolist(), THREE, THREE, 2) == derive_genotype(ALPHAS, ALPHAS, THREE,
                                                                                          THREE, 2)
    with pytest.raises(ValueError, match="alphas_normal has 4 columns but the switches leave 3"):
        derive_genotype(np.zeros((14, 4)), ALPHAS, THREE, THREE)
    with pytest.raises(ValueError, match="one row per edge"):
        derive_genotype(ALPHAS[:13], ALPHAS, THREE, THREE)
    uneven = [list(row) for row in THREE]
    uneven[5][7] = True
    with pytest.raises(ValueError, match="same number"):
        derive_genotype(ALPHAS, ALPHAS, uneven, THREE)
    # only 'none' and a skip-connect on every edge: no genotype without skip-connects exists
    two = _switches({NONE, SKIP})
    with pytest.raises(ValueError, match="edge 0 has no operation left"):
        derive_genotype(np.zeros((14, 2)), np.zeros((14, 2)), two, two, max_skip=0)


def test_prune_switches_drops_the_weakest_earlier_first_and_none_first_at_the_end():
    full = full_switches()
    alphas = np.tile(np.arange(8, dtype=np.float32), (14, 1))  # weights rise with the op index
    alphas[1] = [1, 0, 0, 0, 0, 0, 2, 2]  # 5 ties at the bottom: the three earliest of them go
    five = prune_switches(full, alphas, keep=5)
    on = lambda row: [name for name, kept in zip(PRIMITIVES, row) if kept]  # noqa: E731
    assert on(five[0]) == list(PRIMITIVES[3:])
    assert on(five[1]) == ["none", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]
    alphas5 = np.array([[4, 0, 0, 1, 2]] * 14, dtype=np.float32)
    three = prune_switches(five, alphas5, keep=3)
    assert on(three[1]) == ["none", "dil_conv_3x3", "dil_conv_5x5"]
    # after the last stage: 'none' goes first even as the strongest op
    one = prune_switches(three, np.array([[5, 0, 1]] * 14, dtype=np.float32), keep=1, drop_none_first=True)
    assert on(one[1]) == ["dil_conv_5x5"]
    assert on(prune_switches(three, np.array([[5, 0, 1]] * 14, dtype=np.float32), keep=1)[1]) == ["none"]
    with pytest.raises(ValueError, match="keep=5 operations per edge: choose 1..4"):
        prune_switches(five, alphas5, keep=5)


def test_plan_stages_official_defaults_and_validation():
    stages = plan_stages()
    assert [(s.cells, s.channels, s.num_ops, s.keep, s.skip_dropout) for s in stages] == [
        (5, 16, 8, 5, 0.0), (11, 16, 5, 3, 0.4), (17, 16, 3, None, 0.7)]
    assert [s.index for s in stages] == [0, 1, 2]
    with pytest.raises(ValueError, match="one entry per stage"):
        plan_stages(cells=(5, 11))
    with pytest.raises(ValueError, match="num_ops must start at 8"):
        plan_stages(num_ops=(8, 5, 5))
    with pytest.raises(ValueError, match="skip_dropout rates must be in"):
        plan_stages(skip_dropout=(0.0, 0.4, 1.0))


def test_skip_dropout_schedule_decays_within_a_stage():
    # 25 epochs, the first 10 train the weights only
    rates = [skip_dropout_rate(0.4, epoch, 25, 10) for epoch in range(25)]
    assert rates[0] == pytest.approx(0.4 * 24 / 25) and rates[9] == pytest.approx(0.4 * 15 / 25)
    assert all(a > b for a, b in zip(rates[:10], rates[1:10]))
    assert rates[10] == pytest.approx(0.4)  # the official schedule restarts when the alphas train
    assert rates[11] == pytest.approx(0.4 * math.exp(-0.2)) and rates[24] == pytest.approx(0.4 * math.exp(-2.8))
    assert all(a > b for a, b in zip(rates[10:], rates[11:]))
    assert skip_dropout_rate(0.0, 12, 25, 10) == 0.0
