"""Compare scoring backends on the champion, in-process, single-threaded, pinned to one core.

    .venv/bin/python -m bench.backends [--core 0] [--repeats 5] [--single-calls 5000] [--batch-calls 40] [--model M]

Backends: xgboost `inplace_predict` (the fallback of our Predictor), the compiled engines of training/compiler.py
(the branch-free one of training/branchless.py, what our service serves, and TL2cgen, its fallback), each built from
the booster into a temporary folder and loaded as the service loads it (`bento.model.compiled.CompiledTrees`), and ONNX
Runtime (the booster converted with onnxmltools; optional, not a project dependency:
`.venv/bin/pip install onnxruntime onnxmltools`).
Measures µs per single-row call cycling through different rows (the same row again and again would train
the branch predictor), µs per 1,000-row call (consecutive batches of different rows), and the largest
|difference| to xgboost over all rows. Rows: the held-out test split (missing values included) when the
data is at $READMISSION_DATA or ../shared/data/dataset_diabetes.zip, else rows generated from a sample
record. Prints a markdown table and PASS or MISS for issue 23's target for the trees (a 1,000-row call at least
TARGET_SPEEDUP times faster per row than TL2cgen, at most TOLERANCE from xgboost); writes bench/results/backends.json.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.inputs import RESULTS, input_rows, model_file, shown
from bench.processes import SERVER_CORE
from bento.model.compiled import BRANCHLESS, TL2CGEN, TOLERANCE
from training.settings import data_file

BATCH_ROWS = 1000
BRANCH_FREE, TL2CGEN_NAME = "branch-free (training/branchless.py)", "TL2cgen"
TARGET_SPEEDUP = 3.0  # issue 23: the branch-free engine against TL2cgen, 1,000-row calls
ONNX_INSTALL = ".venv/bin/pip install onnxruntime onnxmltools"

Scorer = Callable[[np.ndarray], np.ndarray]  # float32 [N, F] -> probabilities [N]


def test_rows() -> tuple[np.ndarray, str]:
    """The encoded held-out test rows (float32, NaN = missing), or generated rows; and where they come from."""
    from bento import features

    source = data_file()
    if source is not None:
        from training import data

        test = data.split(data.clean(data.load(source))).test
        return features.encode(data.records(test)).astype(np.float32), f"UCI test split ({source.name})"
    rows, _, what = input_rows(5000)
    return rows.astype(np.float32), what


def xgboost_scorer(model: Path) -> tuple[Scorer, dict[str, Any]]:
    """xgboost `inplace_predict` on the booster, nthread=1."""
    import xgboost as xgb

    booster = xgb.Booster(model_file=str(model))
    booster.set_param({"nthread": 1})

    def score(matrix: np.ndarray) -> np.ndarray:
        return booster.inplace_predict(matrix, validate_features=False)

    return score, {"version": xgb.__version__}


def compiled_scorer(model: Path, columns: int, engine: str, work: Path) -> tuple[Scorer, dict[str, Any]]:
    """The booster compiled by `engine` into `work`, then loaded and checked as the service does (`load_ms`: the
    loading alone, not the compiling)."""
    import xgboost as xgb

    from bento.model.compiled import COMPILED_DIR, CompiledTrees
    from training.compiler import compile_booster

    start = time.perf_counter()
    manifest = compile_booster(xgb.Booster(model_file=str(model)), work / engine / COMPILED_DIR, engines=(engine,))
    loading = time.perf_counter()
    trees = CompiledTrees.load(work / engine, columns)
    info = {k: manifest[k] for k in ("tl2cgen", "compiler", "cflags", "trees", "depth", "lanes") if k in manifest}
    info |= {"compile_s": round(loading - start, 1), "load_ms": round((time.perf_counter() - loading) * 1000, 1)}
    return trees.probabilities, info


def onnx_scorer(model: Path, columns: int) -> tuple[Scorer, dict[str, Any]]:
    """ONNX Runtime on the booster converted by onnxmltools (opset 15), one intra- and one inter-op thread."""
    import onnxmltools
    import onnxruntime as ort
    import xgboost as xgb
    from onnxmltools.convert.common.data_types import FloatTensorType

    booster = xgb.Booster(model_file=str(model))
    converted = onnxmltools.convert_xgboost(
        booster, initial_types=[("input", FloatTensorType([None, columns]))], target_opset=15
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(converted.SerializeToString(), options, providers=["CPUExecutionProvider"])
    probabilities = session.get_outputs()[1].name  # [N, 2]; index 0 is the label

    def score(matrix: np.ndarray) -> np.ndarray:
        return session.run([probabilities], {"input": matrix})[0][:, 1]

    return score, {"version": ort.__version__, "onnxmltools": onnxmltools.__version__, "opset": 15}


def per_call_us(score: Scorer, inputs: list[np.ndarray], calls: int, repeats: int) -> list[float]:
    """µs per call of `score`, cycling through `inputs`, for each of `repeats` timed runs (after a warm-up)."""
    for matrix in inputs[: min(len(inputs), 200)]:
        score(matrix)
    times = []
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter_ns()
            for i in range(calls):
                score(inputs[i % len(inputs)])
            times.append((time.perf_counter_ns() - start) / calls / 1000)
    finally:
        gc.enable()
    return times


def main() -> int:
    """Measure every backend available; 1 if xgboost or the compiled model could not be measured."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--core", type=int, default=int(SERVER_CORE), help="CPU core to pin to (default 0)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement; the median is reported")
    parser.add_argument("--single-calls", type=int, default=5000, help="single-row calls per timed run")
    parser.add_argument("--batch-calls", type=int, default=40, help=f"{BATCH_ROWS:,}-row calls per timed run")
    parser.add_argument("--model", type=Path, help="a booster (model.ubj); default: readmission:latest's in the store")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"  # before xgboost and onnxruntime (imported lazily) size their pools
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})

    model = args.model or model_file()
    rows, source = test_rows()
    columns = rows.shape[1]
    singles = [np.ascontiguousarray(rows[i : i + 1]) for i in range(len(rows))]
    batches = [np.ascontiguousarray(rows[i : i + BATCH_ROWS]) for i in range(0, len(rows) - BATCH_ROWS + 1, BATCH_ROWS)]
    if not batches:
        sys.exit(f"fewer than {BATCH_ROWS} rows")
    print(
        f"model {shown(model)}; {len(rows):,} rows from {source} "
        f"({int(np.isnan(rows).any(axis=1).sum()):,} with a missing value); core {args.core}",
        flush=True,
    )

    work = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    factories: list[tuple[str, Callable[[], tuple[Scorer, dict[str, Any]]]]] = [
        ("xgboost inplace_predict", lambda: xgboost_scorer(model)),
        (BRANCH_FREE, lambda: compiled_scorer(model, columns, BRANCHLESS, work)),
        (TL2CGEN_NAME, lambda: compiled_scorer(model, columns, TL2CGEN, work)),
        ("ONNX Runtime", lambda: onnx_scorer(model, columns)),
    ]
    reference: np.ndarray | None = None
    results: list[dict[str, Any]] = []
    scorers: dict[str, Scorer] = {}
    for name, factory in factories:
        start = time.perf_counter()
        try:
            score, info = factory()
        except ImportError as error:
            print(f"{name}: skipped, {error.name or error} is not installed: {ONNX_INSTALL}", flush=True)
            results.append({"backend": name, "skipped": f"not installed ({ONNX_INSTALL})"})
            continue
        except Exception as error:  # e.g. CompiledModelError: report and go on with the others
            print(f"{name}: skipped, {type(error).__name__}: {error}", flush=True)
            results.append({"backend": name, "skipped": f"{type(error).__name__}: {error}"})
            continue
        load_ms = info.pop("load_ms", (time.perf_counter() - start) * 1000)
        probabilities = np.asarray(score(rows), dtype=np.float64)
        if reference is None:  # xgboost, first
            reference = probabilities
        result = {"backend": name, "load_ms": round(load_ms, 1), "single_row_us_runs": [], "batch_us_runs": []}
        result |= {"max_abs_diff": float(np.max(np.abs(probabilities - reference))), **info}
        results.append(result)
        scorers[name] = score
    # the timed runs take turns (one run of each backend per repeat): a machine busy with other work slows all alike
    for _ in range(args.repeats):
        for result in (r for r in results if r["backend"] in scorers):
            score = scorers[result["backend"]]
            result["single_row_us_runs"] += per_call_us(score, singles, args.single_calls, 1)
            result["batch_us_runs"] += per_call_us(score, batches, args.batch_calls, 1)
    for result in (r for r in results if r["backend"] in scorers):
        single, batch = result["single_row_us_runs"], result["batch_us_runs"]
        result |= {"single_row_us": statistics.median(single), "batch_us": statistics.median(batch)}
        result["batch_us_per_row"] = result["batch_us"] / BATCH_ROWS
        print(
            f"{result['backend']}: {result['single_row_us']:.1f} µs / row, {result['batch_us']:,.0f} µs / "
            f"{BATCH_ROWS:,} rows, max |diff| {result['max_abs_diff']:.2g}",
            flush=True,
        )

    shutil.rmtree(work, ignore_errors=True)  # the libraries stay mapped until the process ends
    base = next((r for r in results if "single_row_us" in r), None)
    lines = [
        f"| backend | µs / 1-row call | µs / {BATCH_ROWS:,}-row call | µs / row in batch "
        "| vs xgboost (1 row, batch) | max abs diff vs xgboost | load ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['backend']} | skipped: {r['skipped']} | | | | | |")
            continue
        speedup = f"{base['single_row_us'] / r['single_row_us']:.1f}x, {base['batch_us'] / r['batch_us']:.1f}x"
        lines.append(
            f"| {r['backend']} | {r['single_row_us']:.1f} | {r['batch_us']:,.0f} | {r['batch_us_per_row']:.2f} "
            f"| {speedup} | {r['max_abs_diff']:.2g} | {r['load_ms']:,.0f} |"
        )
    lines += [
        "",
        f"{len(rows):,} rows ({source}); single-threaded, pinned to core {args.core}; median of {args.repeats} "
        f"runs (the backends taking turns) of {args.single_calls:,} single-row calls (cycling through different rows) "
        f"and {args.batch_calls} calls of {BATCH_ROWS:,} consecutive rows; max abs diff over all rows.",
        "",
        trees_target(results),
    ]
    table = "\n".join(lines) + "\n"
    print()
    print(table)
    RESULTS.mkdir(exist_ok=True)
    meta = {
        "model": shown(model),
        "rows": len(rows),
        "rows_with_missing": int(np.isnan(rows).any(axis=1).sum()),
        "rows_source": source,
        "core": args.core,
        "repeats": args.repeats,
        "single_calls": args.single_calls,
        "batch_calls": args.batch_calls,
        "cpu": platform.processor() or platform.machine(),
        "numpy": np.__version__,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }
    document = {"meta": meta, "backends": results, "target": trees_target(results)}
    (RESULTS / "backends.json").write_text(json.dumps(document, indent=2) + "\n")
    return 0 if all("batch_us" in r for r in results[:2]) else 1


def trees_target(results: list[dict[str, Any]]) -> str:
    """PASS or MISS for issue 23's target for the trees: the branch-free engine against TL2cgen, and its exactness."""
    measured = {r["backend"]: r for r in results if "batch_us" in r}
    if BRANCH_FREE not in measured or TL2CGEN_NAME not in measured:
        return f"MISS the trees: {BRANCH_FREE} or {TL2CGEN_NAME} was not measured"
    ours, theirs = measured[BRANCH_FREE], measured[TL2CGEN_NAME]
    speedup = theirs["batch_us"] / ours["batch_us"]
    verdict = "PASS" if speedup >= TARGET_SPEEDUP and ours["max_abs_diff"] <= TOLERANCE else "MISS"
    return (
        f"{verdict} the trees: a {BATCH_ROWS:,}-row call {speedup:.1f}x faster per row than TL2cgen "
        f"(target {TARGET_SPEEDUP:g}x), max |diff| to xgboost {ours['max_abs_diff']:.2g} (target {TOLERANCE:g})"
    )


if __name__ == "__main__":
    sys.exit(main())
