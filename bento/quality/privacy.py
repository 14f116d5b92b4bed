"""What may be published about the patients scored: the one step every patient-moving figure is published in.

Every figure that moves with each patient is computed over a stepped set of rows: the estimates (bento/quality/
estimates.py) over the oldest multiple of PUBLISH_ROWS logged predictions of each version and window, by id; the
realised figures (bento/quality/windows.py) and the champion/challenger comparison (bento/quality/comparison.py)
over the oldest multiple of PUBLISH_ROWS labelled predictions of each version (or pair) and window, by the time
their outcome was recorded (`published`). So one more prediction or outcome moves nothing until it completes a
step, and no difference of two readings (two scrapes of /metrics, two GET /performance around one `POST /feedback`)
describes fewer than PUBLISH_ROWS patients (README, "Threat model").

What the step does not close: the windows slide with time. A labelled row whose prediction leaves a window takes
its place in the published set with it, and while the window holds more rows than it publishes, the next row by
outcome time takes that place: a reading before and one after can then differ by those two rows.
"""

from __future__ import annotations

import numpy as np

# Series and figures that move with each patient are published in steps of at least this many rows: the smallest
# group a difference of two readings (two scrapes, two GET /performance) can describe (README, "Threat model").
PUBLISH_ROWS = 20


def published(rows: np.ndarray, recorded: np.ndarray) -> np.ndarray:
    """Of `rows` (indices of one version or pair and window, in the order of the prediction ids) and `recorded`
    (when each one's outcome was recorded), those published: the oldest multiple of PUBLISH_ROWS by outcome time,
    ties by prediction id, returned in the order given.

    By outcome time, not by prediction id: an outcome about an old prediction is the newest row, so it waits for
    PUBLISH_ROWS - 1 more outcomes instead of displacing a published row (and showing its own outcome as the
    difference of two readings)."""
    rows = np.asarray(rows)
    oldest = np.argsort(np.asarray(recorded, dtype=np.float64), kind="stable")  # stable: ties stay in id order
    return rows[np.sort(oldest[: len(rows) // PUBLISH_ROWS * PUBLISH_ROWS])]
