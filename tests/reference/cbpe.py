"""Run by the NannyML venv's Python (never imported by the suite): NannyML's CBPE on the rows of an .npz file.

    python cbpe.py ROWS.npz     # prints JSON: {"as_run": {...}, "uncalibrated": {...}, "recalibrated": bool}

The .npz holds reference_probability, reference_outcome (labelled rows CBPE is fitted on), probability (the rows
estimated, one chunk) and threshold. "as_run": CBPE's "roc_auc" and "precision" as a user gets them (NannyML
recalibrates the probabilities with an isotonic fit on the reference rows where its test says that helps:
"recalibrated"); "uncalibrated": CBPE told to keep the probabilities as they are (its NoopCalibrator), the
definition bento/quality/estimates.py implements.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

import numpy as np
import pandas as pd

os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"  # NannyML sends usage statistics unless told not to
warnings.simplefilter("ignore")  # "the resulting number of chunks is too low": one chunk is what is wanted

import nannyml  # noqa: E402
from nannyml.calibration import Calibrator, NoopCalibrator  # noqa: E402


def frame(probability: np.ndarray, threshold: float, outcome: np.ndarray | None = None) -> pd.DataFrame:
    """The columns CBPE reads."""
    columns = {"probability": probability, "flagged": (probability >= threshold).astype(int)}
    return pd.DataFrame(columns if outcome is None else {**columns, "outcome": outcome})


def estimate(rows: np.lib.npyio.NpzFile, calibrator: Calibrator | None) -> tuple[dict, bool]:
    """CBPE's estimates of the rows, and whether it recalibrated them (`calibrator`: None is NannyML's default)."""
    threshold = float(rows["threshold"])
    cbpe = nannyml.CBPE(
        problem_type="classification_binary",
        y_pred_proba="probability",
        y_pred="flagged",
        y_true="outcome",
        metrics=["roc_auc", "precision"],
        chunk_number=1,
        calibrator=calibrator,
    )
    cbpe.fit(frame(rows["reference_probability"], threshold, rows["reference_outcome"]))
    result = cbpe.estimate(frame(rows["probability"], threshold)).to_df()
    analysis = result[result[("chunk", "period")] == "analysis"]  # the reference's own chunk comes first
    (row,) = analysis.index
    figures = {name: float(analysis.loc[row, (name, "value")]) for name in ("roc_auc", "precision")}
    return figures, bool(cbpe.needs_calibration) and not isinstance(calibrator, NoopCalibrator)


def main(path: str) -> None:
    """Print CBPE's estimates of the rows in `path`, as run and with the probabilities kept."""
    rows = np.load(path)
    as_run, recalibrated = estimate(rows, None)
    uncalibrated, _ = estimate(rows, NoopCalibrator())
    print(json.dumps({"as_run": as_run, "uncalibrated": uncalibrated, "recalibrated": recalibrated}))


if __name__ == "__main__":
    main(sys.argv[1])
