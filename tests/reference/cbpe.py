"""Run by the NannyML venv's Python (never imported by the suite): NannyML's CBPE on the rows of an .npz file.

    python cbpe.py ROWS.npz     # prints JSON: {"roc_auc", "precision", "estimate_roc_auc"}

The .npz holds reference_probability, reference_outcome (labelled rows CBPE is fitted on, as NannyML's workflow
does: it calibrates on them where that helps), probability (the rows estimated, one chunk) and threshold.
"roc_auc" and "precision" are CBPE's estimates as a user gets them; "estimate_roc_auc" is its ROC-AUC function
alone on the uncalibrated probabilities, the definition bento/quality/estimates.py implements.
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
from nannyml.performance_estimation.confidence_based.metrics import estimate_roc_auc  # noqa: E402


def frame(probability: np.ndarray, threshold: float, outcome: np.ndarray | None = None) -> pd.DataFrame:
    """The columns CBPE reads."""
    columns = {"probability": probability, "flagged": (probability >= threshold).astype(int)}
    return pd.DataFrame(columns if outcome is None else {**columns, "outcome": outcome})


def main(path: str) -> None:
    """Print CBPE's estimates of the rows in `path`."""
    rows = np.load(path)
    threshold = float(rows["threshold"])
    cbpe = nannyml.CBPE(
        problem_type="classification_binary",
        y_pred_proba="probability",
        y_pred="flagged",
        y_true="outcome",
        metrics=["roc_auc", "precision"],
        chunk_number=1,
    )
    cbpe.fit(frame(rows["reference_probability"], threshold, rows["reference_outcome"]))
    result = cbpe.estimate(frame(rows["probability"], threshold)).to_df()
    print(
        json.dumps(
            {
                "roc_auc": float(result[("roc_auc", "value")].iloc[0]),
                "precision": float(result[("precision", "value")].iloc[0]),
                "estimate_roc_auc": float(estimate_roc_auc(rows["probability"], rows["probability"])),
                "calibrated": bool(cbpe.needs_calibration),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
