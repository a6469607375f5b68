"""Shared pytest fixtures for speechkit's tests."""
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Real-data fixtures live beside the project checkout, never inside it.
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"


@pytest.fixture
def an4_dir() -> pathlib.Path:
    d = SHARED_FIXTURES / "an4"
    if not d.is_dir():
        pytest.skip(f"real-data fixture folder {d} is absent")
    return d


@pytest.fixture
def grid_dir() -> pathlib.Path:
    d = SHARED_FIXTURES / "grid"
    if not d.is_dir():
        pytest.skip(f"real-data fixture folder {d} is absent")
    return d
