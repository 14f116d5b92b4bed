"""Compile a booster to native code at `readmission import`: an engine's C, the C compiler, a check against xgboost.

Writes bento/model/compiled.py's artifact: the shared library, a manifest (engine, platform, compiler, sha256) and
reference rows with xgboost's probabilities, which the server checks the library against when it loads.
The reference rows are synthetic, never patients: every column takes values on and beside the split
thresholds of the trees and missing values, so each comparison the trees make is exercised both ways.
The engines, tried in order (ENGINES): the branch-free evaluator of training/branchless.py, then TL2cgen for a
booster it refuses or a library that fails; bench/backends.py measures both (and ONNX Runtime) on the champion.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from bento.model import compiled
from training import branchless

COMPILER = os.environ.get("CC", "gcc")
CFLAGS = ["-O3", "-fPIC", "-std=c99", "-shared"]  # no -march=native: the library must run on any x86-64
REFERENCE_ROWS = 2048
TRANSLATION_UNITS = 2  # TL2cgen splits the trees over this many C files (smaller units compile faster)
# TL2cgen's batch entry point. TL2cgen's predict() adds the base score after the trees; xgboost starts from it. Summing
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

Sources = Callable[[xgb.Booster, Path], dict[str, Any]]  # writes an engine's C files into a folder; manifest entries


class CompileError(RuntimeError):
    """The booster could not be compiled here (no compiler, every engine refused or failed)."""


def compile_booster(
    booster: xgb.Booster, target: Path, seed: int = 0, engines: Sequence[str] = compiled.ENGINES
) -> dict:
    """Write the compiled model into `target` (a new folder) with the first of `engines` that compiles it and agrees
    with xgboost; return its manifest, which names the engines refused before it and why. The folder is whole or
    absent."""
    if shutil.which(COMPILER) is None:
        raise CompileError(f"no C compiler ({COMPILER}) on this machine; install gcc or set CC")
    refused: dict[str, str] = {}
    for engine in engines:
        try:
            return _build(booster, target, seed, engine, refused)
        except CompileError as error:
            refused[engine] = str(error)
    raise CompileError("; ".join(f"{engine}: {reason}" for engine, reason in refused.items()))


def _build(booster: xgb.Booster, target: Path, seed: int, engine: str, refused: dict[str, str]) -> dict:
    columns = booster.num_features()
    with tempfile.TemporaryDirectory() as work:
        source, staging = Path(work) / "src", Path(work) / "model" / compiled.COMPILED_DIR
        source.mkdir()
        entries = SOURCES[engine](booster, source)
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
            "backend": engine,
            "columns": columns,
            **entries,
            "platform": compiled.current_platform(),
            "compiler": _compiler_version(),
            "cflags": CFLAGS,
            "sha256": hashlib.sha256(library.read_bytes()).hexdigest(),
            "refused": refused,
        }
        (staging / compiled.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        try:
            compiled.CompiledTrees.load(staging.parent, columns)  # it loads here and agrees with xgboost
        except compiled.CompiledModelError as error:
            raise CompileError(str(error)) from error
        shutil.copytree(staging, target)
    return manifest


def _branchless_sources(booster: xgb.Booster, source: Path) -> dict[str, Any]:
    """training/branchless.py's one C file."""
    try:
        text, entries = branchless.source(booster, compiled.ENTRY_POINT)
    except branchless.UnsupportedError as error:
        raise CompileError(str(error)) from error
    (source / "model.c").write_text(text)
    return entries


def _tl2cgen_sources(booster: xgb.Booster, source: Path) -> dict[str, Any]:
    """TL2cgen's C files and the batch entry point's glue."""
    import tl2cgen
    import treelite

    model_file = source.parent / "model.ubj"
    booster.save_model(model_file)
    model = treelite.frontend.load_xgboost_model(str(model_file), format_choice="ubjson")
    tl2cgen.generate_c_code(model, source, params={"parallel_comp": TRANSLATION_UNITS})
    (source / "glue.c").write_text(_glue(model, source, booster.num_features()))
    return {"trees": model.num_tree, "tl2cgen": tl2cgen.__version__}


SOURCES: dict[str, Sources] = {compiled.BRANCHLESS: _branchless_sources, compiled.TL2CGEN: _tl2cgen_sources}


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
