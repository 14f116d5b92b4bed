"""The booster compiled to native code (TL2cgen), loaded with ctypes: no compiler or TL2cgen at serving time.

`readmission import` (training/compiler.py) writes the folder COMPILED_DIR beside the booster: the shared
library, a manifest naming the platform it was built for, and reference rows with xgboost's probabilities.
`CompiledTrees.load` refuses (CompiledModelError) an artifact that is missing, built for another platform,
cannot be loaded, or disagrees with xgboost on the reference rows by more than TOLERANCE; the predictor then
falls back to xgboost.
"""

from __future__ import annotations

import ctypes
import json
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COMPILED_DIR = "compiled"
LIBRARY_FILE = "model.so"
MANIFEST_FILE = "manifest.json"
REFERENCE_FILE = "reference.npz"  # rows (float32 [N, F], NaN = missing) and xgboost's probabilities
FORMAT = 1
TOLERANCE = 1e-6
ENTRY_POINT = "readmission_predict_rows"  # the C glue of training/compiler.py


class CompiledModelError(RuntimeError):
    """The compiled model cannot serve: the reason is the message."""


def current_platform() -> dict[str, str]:
    """What a shared library built here needs from the machine that loads it."""
    libc, libc_version = platform.libc_ver()
    return {"system": platform.system(), "machine": platform.machine(), "libc": f"{libc} {libc_version}".strip()}


def compatible(built_for: dict[str, str], here: dict[str, str]) -> bool:
    """Same OS and CPU architecture, and a C library at least as new as the one it was linked against."""
    if built_for.get("system") != here["system"] or built_for.get("machine") != here["machine"]:
        return False
    built_libc, _, built_version = built_for.get("libc", "").partition(" ")
    libc, _, version = here["libc"].partition(" ")
    if built_libc != libc:
        return False
    try:
        return tuple(map(int, version.split("."))) >= tuple(map(int, built_version.split(".")))
    except ValueError:
        return False


@dataclass
class CompiledTrees:
    """One compiled forest: probabilities for a float32 row-major matrix, reentrant (no shared state)."""

    library: ctypes.CDLL
    predict_rows: ctypes._CFuncPtr  # ENTRY_POINT, with its argument types set
    columns: int
    max_abs_diff: float  # against xgboost on the reference rows, measured at load

    @classmethod
    def load(cls, model_folder: Path, columns: int) -> CompiledTrees:
        """Load and check the artifact under `model_folder`; CompiledModelError says why it cannot serve."""
        folder = model_folder / COMPILED_DIR
        try:
            manifest = json.loads((folder / MANIFEST_FILE).read_text())
        except FileNotFoundError as error:
            raise CompiledModelError("no compiled model in the model folder") from error
        except (OSError, ValueError) as error:
            raise CompiledModelError(f"the compiled model's manifest is unreadable: {type(error).__name__}") from error
        if manifest.get("format") != FORMAT or manifest.get("columns") != columns:
            raise CompiledModelError(f"the compiled model is of another format or width: {manifest.get('format')}")
        here = current_platform()
        if not compatible(manifest.get("platform", {}), here):
            raise CompiledModelError(f"the compiled model was built for {manifest.get('platform')}, this is {here}")
        try:
            library = ctypes.CDLL(str(folder / LIBRARY_FILE))
            function = getattr(library, ENTRY_POINT)
        except (OSError, AttributeError) as error:
            raise CompiledModelError(f"the compiled model cannot be loaded: {error}") from error
        function.restype = None
        function.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p]
        trees = cls(library, function, columns, max_abs_diff=float("nan"))
        trees.max_abs_diff = trees._check(folder / REFERENCE_FILE)
        return trees

    def _check(self, reference_file: Path) -> float:
        try:
            with np.load(reference_file) as reference:
                rows, expected = reference["rows"], reference["probabilities"]
        except (OSError, ValueError, KeyError) as error:
            raise CompiledModelError(f"the reference rows are unreadable: {type(error).__name__}") from error
        if rows.ndim != 2 or rows.shape[1] != self.columns or expected.shape != (rows.shape[0],):
            raise CompiledModelError("the reference rows do not fit the model")
        difference = float(np.max(np.abs(self.probabilities(rows).astype(np.float64) - expected)))
        if not difference <= TOLERANCE:
            raise CompiledModelError(
                f"the compiled model differs from xgboost by {difference:.3g} on the reference rows (> {TOLERANCE})"
            )
        return difference

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """Probability of the positive class for each row (float32; NaN is a missing value)."""
        rows = np.ascontiguousarray(matrix, dtype=np.float32)
        out = np.empty(rows.shape[0], dtype=np.float32)
        self.predict_rows(rows.ctypes.data, rows.shape[0], self.columns, out.ctypes.data)
        return out
