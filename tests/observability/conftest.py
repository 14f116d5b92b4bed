"""Fixtures of the observability tests that start a service: the rows it is sent."""

from __future__ import annotations

import numpy as np
import pytest

from training import data


@pytest.fixture(scope="module")
def held_out(champion_store) -> np.ndarray:
    """The encoded test split of the data the served champion was trained on (seed 42)."""
    frame = data.clean(data.load(champion_store["data"], verify=False))
    return data.design_matrix(data.split(frame, seed=42).test)[0]
