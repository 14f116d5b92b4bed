"""Compile a booster to native code at `readmission import`: TL2cgen's C, a batch entry point, the C compiler.

Writes bento/model/compiled.py's artifact: the shared library, a manifest (platform, compiler, sha256) and
reference rows with xgboost's probabilities, which the server checks the library against when it loads.
The reference rows are synthetic, never patients: every column takes values on and beside the split
thresholds of the trees and missing values, so each comparison the trees make is exercised both ways.
Why TL2cgen and not ONNX Runtime: bench/backends.py measures both on the champion.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import xgboost as xgb

from bento.model import compiled

COMPILER = os.environ.get("CC", "gcc")
CFLAGS = ["-O3", "-fPIC", "-std=c99", "-shared"]  # no -march=native: the library must run on any x86-64
REFERENCE_ROWS = 2048
TRANSLATION_UNITS = 2  # TL2cgen splits the trees over this many C files (smaller units compile faster)
# The batch entry point. TL2cgen's predict() adds the base score after the trees; xgboost starts from it. Summing
# in xgboost's order (base score, then the trees in order, in float32) keeps the probabilities within about one
# float32 step of xgboost's instead of several. A row becomes TL2cgen's `union Entry` (missing = -1); NaN is missing.
GLUE = """
#include "header.h"
void %(entry)s(const float* rows, int64_t nrow, int32_t ncol, float* out) {
  union Entry entry[%(columns)d];
  for (int64_t i = 0; i < nrow; ++i) {
    const float* row = rows + i * ncol;
    for (int32_t j = 0; j < ncol; ++j) {
      if (isnan(row[j])) entry[j].missing = -1; else entry[j].fvalue = row[j];
    }
    out[i] = (float)(%(base_margin).17g);
%(units)s
    postprocess(out + i);
  }
}
"""


class CompileError(RuntimeError):
    """The booster could not be compiled here (no compiler, TL2cgen failed)."""


def compile_booster(booster: xgb.Booster, target: Path, seed: int = 0) -> dict:
    """Write the compiled model into `target` (a new folder); return its manifest. The folder is whole or absent."""
    import tl2cgen
    import treelite

    columns = booster.num_features()
    if shutil.which(COMPILER) is None:
        raise CompileError(f"no C compiler ({COMPILER}) on this machine; install gcc or set CC")
    with tempfile.TemporaryDirectory() as work:
        source, staging = Path(work) / "src", Path(work) / "model" / compiled.COMPILED_DIR
        model_file = Path(work) / "model.ubj"
        booster.save_model(model_file)
        model = treelite.frontend.load_xgboost_model(str(model_file), format_choice="ubjson")
        tl2cgen.generate_c_code(model, source, params={"parallel_comp": TRANSLATION_UNITS})
        (source / "glue.c").write_text(_glue(model, source, columns))
        staging.mkdir(parents=True)
        library = staging / compiled.LIBRARY_FILE
        units = sorted(str(p) for p in source.glob("*.c"))
        done = subprocess.run([COMPILER, *CFLAGS, "-o", str(library), *units, "-lm"], capture_output=True, text=True)
        if done.returncode != 0:
            raise CompileError(f"{COMPILER} failed: {done.stderr[-2000:]}")
        rows = reference_rows(booster, REFERENCE_ROWS, seed)
        probabilities = booster.inplace_predict(rows, validate_features=False).astype(np.float64)
        np.savez(staging / compiled.REFERENCE_FILE, rows=rows, probabilities=probabilities)
        manifest = {
            "format": compiled.FORMAT,
            "backend": "tl2cgen",
            "columns": columns,
            "trees": model.num_tree,
            "platform": compiled.current_platform(),
            "compiler": _compiler_version(),
            "cflags": CFLAGS,
            "tl2cgen": tl2cgen.__version__,
            "sha256": hashlib.sha256(library.read_bytes()).hexdigest(),
        }
        (staging / compiled.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        try:
            compiled.CompiledTrees.load(staging.parent, columns)  # it loads here and agrees with xgboost
        except compiled.CompiledModelError as error:
            raise CompileError(str(error)) from error
        shutil.copytree(staging, target)
    return manifest


def _glue(model: object, source: Path, columns: int) -> str:
    """The C of the batch entry point, for a binary classifier with one base score and a sigmoid."""
    description = json.loads(model.dump_as_json())  # type: ignore[attr-defined]
    if (
        description["postprocessor"] != "sigmoid"
        or description["num_target"] != 1
        or description["average_tree_output"]
    ):
        raise CompileError(f"only binary logistic boosters are compiled, not {description['postprocessor']}")
    units = sorted(int(p.stem[2:]) for p in source.glob("tu*.c"))
    calls = "\n".join(f"    predict_unit{k}(entry, out + i);" for k in units)
    return GLUE % {
        "entry": compiled.ENTRY_POINT,
        "columns": columns,
        "base_margin": description["base_scores"][0],
        "units": calls,
    }


def reference_rows(booster: xgb.Booster, count: int, seed: int) -> np.ndarray:
    """Synthetic float32 rows: each column on a split threshold, just beside one, or missing."""
    rng = np.random.default_rng(seed)
    columns = booster.num_features()
    thresholds: list[list[float]] = [[] for _ in range(columns)]
    names = booster.feature_names or [f"f{j}" for j in range(columns)]
    position = {name: j for j, name in enumerate(names)}
    for tree in booster.get_dump(dump_format="json"):
        _collect(json.loads(tree), position, thresholds)
    rows = np.empty((count, columns), dtype=np.float32)
    for j, values in enumerate(thresholds):
        split = np.asarray(values or [0.0], dtype=np.float32)
        candidates = np.concatenate(
            [split, np.nextafter(split, np.float32(-np.inf)), np.nextafter(split, np.float32(np.inf)), [np.nan]]
        ).astype(np.float32)
        rows[:, j] = rng.choice(candidates, size=count)
    return rows


def _collect(node: dict, position: dict[str, int], thresholds: list[list[float]]) -> None:
    if "split" not in node:
        return
    thresholds[position[node["split"]]].append(float(node["split_condition"]))
    for child in node["children"]:
        _collect(child, position, thresholds)


def _compiler_version() -> str:
    done = subprocess.run([COMPILER, "--version"], capture_output=True, text=True)
    return done.stdout.splitlines()[0] if done.returncode == 0 and done.stdout else COMPILER
