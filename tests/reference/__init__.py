"""NannyML's CBPE as a reference, run in its own venv (`make nannyml`; nannyml.in says why not in the project's)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO

# READMISSION_NANNYML_PYTHON, else the venv `make nannyml` makes
NANNYML_PYTHON = Path(os.environ.get("READMISSION_NANNYML_PYTHON", REPO / ".venv-nannyml" / "bin" / "python"))


def nannyml_cbpe(
    folder: Path,
    reference_probability: np.ndarray,
    reference_outcome: np.ndarray,
    probability: np.ndarray,
    threshold: float,
) -> dict:
    """NannyML's CBPE fitted on the labelled reference rows, estimating `probability` (cbpe.py); skips without it."""
    if not NANNYML_PYTHON.is_file():
        pytest.skip(f"NannyML's venv is absent ({NANNYML_PYTHON}): `make nannyml` makes it")
    rows = folder / "rows.npz"
    np.savez(rows, reference_probability=reference_probability, reference_outcome=reference_outcome,
             probability=probability, threshold=threshold)  # fmt: skip
    done = subprocess.run(
        [str(NANNYML_PYTHON), str(Path(__file__).with_name("cbpe.py")), str(rows)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)
