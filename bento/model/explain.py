"""Explanations: the fields that moved one patient's risk most, in a clinician's words."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bento import features
from bento.model.predictor import Predictor


def top_factors(field_contributions: np.ndarray, record: Mapping[str, Any], count: int) -> list[dict[str, Any]]:
    """The `count` fields with the largest absolute TreeSHAP contribution (log-odds), largest first."""
    order = np.argsort(-np.abs(field_contributions), kind="stable")[:count]
    factors = []
    for index in order:
        f = features.FIELDS[index]
        contribution = float(field_contributions[index])
        factors.append(
            {
                "field": f.name,
                "label": f.label,
                "value": f.display(record.get(f.name)),
                "contribution": round(contribution, 5),
                "effect": "raises risk" if contribution > 0 else "lowers risk",
            }
        )
    return factors


def factors(predictor: Predictor, matrix: np.ndarray, records: Sequence[Mapping[str, Any]], count: int) -> list[Any]:
    """The top `count` factors of each row of `matrix` (whose clinical records are `records`)."""
    contributions = predictor.field_contributions(matrix)
    return [top_factors(row, record, count) for row, record in zip(contributions, records, strict=True)]
