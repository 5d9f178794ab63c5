"""lib.darts.visualize: the picture of a genotype's cells."""
import numpy as np
import pytest

from lib.darts import PDARTS, GenotypeError
from lib.darts.visualize import plot_genotype


def test_both_cells_are_drawn_into_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    path = plot_genotype(PDARTS, str(tmp_path / "out" / "cells.png"), title="PDARTS")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 400
        pixels = np.asarray(image.convert("RGB")).astype(int)
    # coloured arrows in both halves (each cell's operations have their own colours)
    coloured = (pixels.max(axis=2) - pixels.min(axis=2)) > 60
    half = pixels.shape[0] // 2
    assert coloured[:half].sum() > 500 and coloured[half:].sum() > 500
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cells.png"]  # no temporary left


def test_an_invalid_genotype_is_refused_before_drawing(tmp_path):
    pytest.importorskip("matplotlib")
    broken = PDARTS._replace(normal=(("conv_9x9", 0),) + PDARTS.normal[1:])
    with pytest.raises(GenotypeError, match="conv_9x9"):
        plot_genotype(broken, str(tmp_path / "cells.png"))
    assert not (tmp_path / "cells.png").exists()
