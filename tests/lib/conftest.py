"""Fixtures shared by the lib tests."""
import pytest


@pytest.fixture(scope="session")
def supernet_600():
    """``build_supernet(0, 600)`` (the published search space, 1000 classes), built once per session:
    ``(model, sta_num, resolution)``. Treat the model as read-only."""
    from lib.models import build_supernet

    return build_supernet(0, 600)
