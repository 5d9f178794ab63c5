"""Fixtures shared by the DARTS tests."""
import pytest

from tests.lib.darts.reference import load_reference


@pytest.fixture(scope="session")
def reference():
    """Outputs of the official P-DARTS code on the weights of ``fill_deterministic``."""
    return load_reference()
