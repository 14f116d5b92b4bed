"""Shadow scoring: the challenger scores the rows the champion served, off the request path (READMISSION_SHADOW).

The log's writer thread (bento/predictionlog/writer.py) asks `Shadow.rows` at each flush for the challenger's rows
of the batches it is about to write: one call of the challenger on the flushed rows' encoded matrices, run in a
thread of its own that the writer waits for at most BUDGET_SECONDS. The rows it returns go into the store in the
served rows' transaction (`shadow_batches`: the served batch's first id, the challenger's version, its probabilities,
its labels at its own threshold). A miss returns no rows and is counted: `failed` where the challenger raised,
`skipped` where it was slower than the budget, still busy with an earlier flush, or the writer's queue was past
half its bound; each kind of miss is logged once per worker. The client's answer was sent before any of this.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from bento.predictionlog.store import LoggedBatch, ShadowBatch

logger = logging.getLogger("readmission")
BUDGET_SECONDS = 0.5  # the writer waits this long for the challenger's call, then writes the served rows without it
SCORED, FAILED, SKIPPED = "scored", "failed", "skipped"
OUTCOMES = (SCORED, FAILED, SKIPPED)

Score = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # encoded rows -> probabilities, labels


class ShadowCounts(Protocol):
    """Where shadow scoring reports what became of the rows (bento/monitoring/metrics.py)."""

    def shadow_rows(self, outcome: str, rows: int) -> None:
        """`rows` served rows were scored by the challenger, or not (failed, skipped)."""


class Shadow:
    """The challenger of one worker, called by the log's writer thread alone."""

    def __init__(
        self, version: str, score: Score, counts: ShadowCounts, budget_seconds: float = BUDGET_SECONDS
    ) -> None:
        self.version = version
        self.score = score
        self.counts = counts
        self.budget_seconds = budget_seconds
        self._call: threading.Thread | None = None  # the last call, perhaps still running
        self._logged: set[str] = set()  # the kinds of miss already logged

    @property
    def busy(self) -> bool:
        """The challenger's last call is still running."""
        return self._call is not None and self._call.is_alive()

    def rows(self, batches: Sequence[LoggedBatch], backlog: bool) -> list[ShadowBatch]:
        """The challenger's rows of `batches` (the writer's queue is past half its bound where `backlog`); none
        where it missed them, counted."""
        count = sum(batch.rows for batch in batches)
        if not count:
            return []
        if backlog:
            return self._missed(SKIPPED, count, "backlog", "the prediction log's queue is past half its bound")
        if self.busy:
            return self._missed(SKIPPED, count, "busy", "the challenger is still scoring an earlier flush")
        matrix = np.concatenate([batch.matrix for batch in batches]) if len(batches) > 1 else batches[0].matrix
        answer: list[tuple[np.ndarray, np.ndarray] | Exception] = []

        def call() -> None:
            try:
                answer.append(self.score(matrix))
            except Exception as error:  # the challenger's failure is counted, never the served rows'
                answer.append(error)

        self._call = threading.Thread(target=call, name="shadow", daemon=True)
        self._call.start()
        self._call.join(self.budget_seconds)
        if not answer:
            return self._missed(SKIPPED, count, "slow", f"the challenger took longer than {self.budget_seconds:g} s")
        scored = answer[0]
        if isinstance(scored, Exception):
            return self._missed(FAILED, count, "failed", f"the challenger failed: {type(scored).__name__}: {scored}")
        probabilities, labels = scored
        if len(probabilities) != count or len(labels) != count:
            return self._missed(FAILED, count, "failed", f"the challenger scored {len(probabilities)} of {count} rows")
        self.counts.shadow_rows(SCORED, count)
        cuts = np.cumsum([batch.rows for batch in batches])[:-1]  # each batch's share of the one call
        return [
            ShadowBatch(batch.first_id, self.version, p, flags)
            for batch, p, flags in zip(batches, np.split(probabilities, cuts), np.split(labels, cuts), strict=True)
        ]

    def _missed(self, outcome: str, count: int, kind: str, why: str) -> list[ShadowBatch]:
        self.counts.shadow_rows(outcome, count)
        if kind not in self._logged:
            self._logged.add(kind)
            logger.warning("shadow: %d rows not scored by challenger %s: %s (logged once)", count, self.version, why)
        return []
