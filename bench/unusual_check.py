"""The unusual-patient check's cost a row (the README's figure; the issue's target: at most 5 µs a row).

`.venv/bin/python -m bench.unusual_check [--repeats 7]` fits the reference on the training split of the UCI data
(seed 42, as training does) when the data is at hand, else on generated rows, and times
`bento.quality.unusual.Check.findings` on the held-out rows: one row a call, cycling through 1,000 different rows
(single-row calls take the one-dimensional path), and 1,000 rows a call. `timeit` repeated, the minimum taken (the
machine may be shared); single-threaded, pinned to one core where the OS allows it. Prints µs a row.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import timeit
from pathlib import Path

import numpy as np

from bento.quality import unusual
from tests import sample_data
from training import data
from training.settings import data_file

ROWS = 1000
BATCH_CALLS = 50


def matrices() -> tuple[np.ndarray, np.ndarray, str]:
    """The training split's and the held-out split's encoded rows, and where they come from."""
    source = data_file()
    if source is not None:
        split = data.split(data.clean(data.load(source)), seed=42)
        return data.design_matrix(split.train)[0], data.design_matrix(split.test)[0], f"UCI data, {source.name}"
    with tempfile.TemporaryDirectory() as folder:
        csv = sample_data.write_csv(Path(folder), count=20_000)
        split = data.split(data.clean(data.load(csv, verify=False)), seed=42)
    return data.design_matrix(split.train)[0], data.design_matrix(split.test)[0], "generated rows"


def main() -> None:
    """Time the check and print µs a row for single-row and 1,000-row calls."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timeit repeats; the minimum is reported")
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin to")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    train, test, source = matrices()
    check = unusual.Check(unusual.Reference.from_training(train))
    rows = np.ascontiguousarray(test[:ROWS])
    singles = [rows[i : i + 1] for i in range(len(rows))]
    flagged = sum(map(bool, check.findings(rows)))
    single = min(timeit.repeat(lambda: [check.findings(r) for r in singles], number=1, repeat=args.repeats))
    batch = min(timeit.repeat(lambda: check.findings(rows), number=BATCH_CALLS, repeat=args.repeats))
    print(f"{source}: reference fitted on {len(train):,} training rows; {len(rows):,} held-out rows, {flagged} flagged")
    print(f"1 row a call:      {single / len(singles) * 1e6:.2f} µs a row (min of {args.repeats} repeats)")
    print(f"{ROWS:,} rows a call: {batch / BATCH_CALLS / len(rows) * 1e6:.3f} µs a row (min of {args.repeats} repeats)")


if __name__ == "__main__":
    main()
