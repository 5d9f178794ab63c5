"""Kendall's tau-b, Spearman's rho and Pearson's r against hand-computed values and scipy.stats;
the scatter plot."""
import math

import numpy as np
import pytest

from pimm.utils.correlation import kendall_tau, pearson_r, rank_correlations, spearman_rho
from pimm.utils.plots import save_scatter_plot


def test_hand_computed_values():
    # 10 pairs, 2 discordant ((1,2) and (3,4)); rank differences (-1, 1, -1, 1, 0)
    x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    assert kendall_tau(x, y) == pytest.approx(0.6)
    assert spearman_rho(x, y) == pytest.approx(1 - 6 * 4 / (5 * 24))
    assert pearson_r(x, y) == pytest.approx(0.8)
    # ties: 4 concordant pairs, none discordant, one pair tied in each list: 4 / sqrt(5 * 5)
    assert kendall_tau([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    # tied values share their mean rank: x ranks (1.5, 1.5, 3, 4)
    assert spearman_rho([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(
        np.corrcoef([1.5, 1.5, 3, 4], [1, 2, 3, 4])[0, 1])
    assert rank_correlations([3, 2, 1], [1, 2, 3]) == {"kendall_tau": -1.0, "spearman_rho": -1.0,
                                                        "pearson_r": -1.0}
    assert all(math.isnan(v) for v in rank_correlations([1, 1, 1], [1, 2, 3]).values())
    with pytest.raises(ValueError, match="same length"):
        kendall_tau([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="at least 2"):
        pearson_r([1], [1])


def test_against_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.RandomState(0)
    for n in (2, 7, 30):
        x = np.round(rng.rand(n) * 5)  # many ties
        y = x + rng.randn(n)
        y[: n // 3] = np.round(y[: n // 3])
        assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y)[0], abs=1e-12)
        assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
        assert pearson_r(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)


def test_scatter_plot_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = save_scatter_plot(str(tmp_path / "scatter.png"), [1.0, 2.0, 3.0], [2.0, 1.0, 3.5], xlabel="x",
                             ylabel="y", title="t", labels=["a", "b", "c"])
    assert path == str(tmp_path / "scatter.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scatter.png"]  # no temporary left
