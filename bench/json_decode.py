"""Decode the 1,000-row V2 JSON body in-process: the strict parser against simdjson's fast path, ms per body.

    .venv/bin/python -m bench.json_decode [--core 0] [--rows 1000] [--repeats 7] [--calls 20]

The body is the benchmark's own (`bench.inputs.v2_body`: FP32 [N, 263], flat JSON data, real rows when the data
zip is at hand). Each path decodes it into the request's tensors (`bento.v2.tensors`: `parse_json` then
`decode_body`, against `decode_request`, which takes `json_tensors.parse`) and then into the checked float32
matrix the model is given (`bento.v2.inference.matrix_of`). Both must give the same matrix, bit for bit.
Reports the minimum over `--repeats` of the mean of `--calls` calls, in CPU time of the process (so that other
processes on a busy machine count less than in wall time), pinned to one core. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import time
import timeit
from collections.abc import Callable

import numpy as np

from bench.inputs import input_rows, v2_body
from bench.processes import SERVER_CORE
from bento.http.parsing import parse_json
from bento.v2 import inference
from bento.v2.tensors import InferRequest, decode_body, decode_request


def _strict(raw: bytes) -> InferRequest:
    return decode_body(parse_json(raw), b"")


def _fast(raw: bytes) -> InferRequest:
    return decode_request(raw, None)


def _ms(call: Callable[[], object], repeats: int, calls: int) -> float:
    return min(timeit.repeat(call, timer=time.process_time, repeat=repeats, number=calls)) / calls * 1e3


def main() -> None:
    """Time both paths on the body, decode alone and decode with the matrix check; print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", type=int, default=int(SERVER_CORE), help="CPU core to pin to (default 0)")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    rows, _, source = input_rows(args.rows)
    raw = v2_body(rows)
    strict = inference.matrix_of(_strict(raw), args.rows)
    fast = inference.matrix_of(_fast(raw), args.rows)
    assert strict.tobytes() == fast.tobytes(), "the two paths disagree"
    print(f"{args.rows} rows of {source}, body {len(raw):,} bytes")
    print(f"CPU ms per body (min of {args.repeats} x {args.calls} calls)")
    print("| path | decode | decode + matrix check |\n|---|---|---|")
    for name, decode in (("strict (orjson)", _strict), ("fast (simdjson)", _fast)):
        decode_ms = _ms(lambda decode=decode: decode(raw), args.repeats, args.calls)
        total_ms = _ms(lambda decode=decode: inference.matrix_of(decode(raw), args.rows), args.repeats, args.calls)
        print(f"| {name} | {decode_ms:.2f} | {total_ms:.2f} |")
    print(f"matrix {strict.shape} {strict.dtype}, identical: {np.array_equal(strict, fast)}")


if __name__ == "__main__":
    main()
