"""Risk bands and the score histogram buckets shared by training and serving."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np

# Upper bounds of the predicted-probability histogram (training reference and /metrics).
SCORE_BUCKETS: tuple[float, ...] = (0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0)


class RiskBand(StrEnum):
    """How a probability reads to a clinician, relative to the population and the threshold."""

    LOW = "low"  # below the readmission rate of the training population
    MODERATE = "moderate"  # above that rate, below the operating threshold
    HIGH = "high"  # at or above the operating threshold: flagged


def risk_band(probability: float, prevalence: float, threshold: float) -> RiskBand:
    """The band of one probability, given the training prevalence and the operating threshold."""
    if probability >= threshold:
        return RiskBand.HIGH
    if probability >= prevalence:
        return RiskBand.MODERATE
    return RiskBand.LOW


def histogram(probabilities: Sequence[float] | np.ndarray, buckets: Sequence[float] = SCORE_BUCKETS) -> list[float]:
    """Share of probabilities at or below each bucket bound (cumulative, like Prometheus)."""
    values = np.asarray(probabilities, dtype=float)[:, None]
    return np.mean(values <= np.asarray(buckets)[None, :], axis=0).round(6).tolist()
