"""Fixtures shared by the tests."""

import pytest

from support import write_tape


@pytest.fixture
def tape(tmp_path):
    """tape(loans) writes a CSV loan tape (defaults of support.LOAN overridden per loan)."""
    return lambda loans, name="tape.csv": write_tape(tmp_path / name, loans)
