"""The branch-free tree engine: C source for a binary logistic booster, evaluated without data-dependent branches.

Every tree is padded to a complete tree of the booster's largest depth (a leaf above the last level becomes a node
whose two subtrees end in copies of it) and stored as arrays: per inner node the column it reads and its threshold,
per leaf its value. A row walks a tree by arithmetic, `node = 2 * node + 1 + (x >= threshold)`, the way xgboost
compares (`x < threshold` goes left). A missing value (NaN) takes the node's default direction without a branch: each
row is copied twice, NaN made -inf in the first copy (every comparison sends it left) and +inf in the second (right),
and a node reads the copy of its default direction (its column index is offset into the second copy when missing
goes right). Rows are scored eight at a time, interleaved, so the CPU overlaps eight independent walks; the rows left
over, and a single row, walk alone. Portable C, no -march: the library runs on any x86-64 (AVX2 gathers were 2.8x
slower on the EPYC it was measured on, per-level permutes no faster, so there is no SIMD path). Margins are float32
sums in xgboost's order (the base score, computed as xgboost does, then the trees in order) and the sigmoid is
xgboost's: the probabilities equal xgboost's.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xgboost as xgb

MAX_DEPTH = 8  # padded trees hold 2**depth leaves: deeper boosters are left to TL2cgen
LANES = 8  # rows walked together


class UnsupportedError(ValueError):
    """The booster has something this engine does not evaluate (the message says what): another engine must."""


def source(booster: xgb.Booster, entry: str) -> tuple[str, dict[str, Any]]:
    """The C translation unit defining `entry` (compiled.ENTRY_POINT's signature), and what the manifest records."""
    model = json.loads(booster.save_raw(raw_format="json"))
    learner = model["learner"]
    objective = learner["objective"]["name"]
    if objective != "binary:logistic":
        raise UnsupportedError(f"only binary:logistic boosters are evaluated branch-free, not {objective}")
    gradient_booster = learner["gradient_booster"]
    if gradient_booster["name"] != "gbtree":
        raise UnsupportedError(f"only gbtree boosters are evaluated branch-free, not {gradient_booster['name']}")
    trees = gradient_booster["model"]["trees"]
    if not trees:
        raise UnsupportedError("the booster has no trees")
    if any(int(group) != 0 for group in gradient_booster["model"]["tree_info"]):
        raise UnsupportedError("the booster has more than one output group")
    columns = int(learner["learner_model_param"]["num_feature"])
    base_score = _base_score(learner["learner_model_param"]["base_score"])
    if not 0.0 < base_score < 1.0:
        raise UnsupportedError(f"the base score {base_score} is not a probability")
    for tree in trees:
        if any(int(kind) != 0 for kind in tree["split_type"]):
            raise UnsupportedError("the booster has categorical splits")
    depth = max(_depth(tree, 0) for tree in trees)
    if depth > MAX_DEPTH:
        raise UnsupportedError(f"the trees are {depth} deep, more than {MAX_DEPTH}")
    depth = max(depth, 1)
    padded = [_padded(tree, depth, columns) for tree in trees]
    text = _C % {
        "entry": entry,
        "trees": len(trees),
        "depth": depth,
        "columns": columns,
        "lanes": LANES,
        "base_score": _hex(base_score),
        "index": ",\n".join("{" + ",".join(str(i) for i in index) + "}" for index, _, _ in padded),
        "threshold": ",\n".join("{" + ",".join(map(_hex, thr)) + "}" for _, thr, _ in padded),
        "leaf": ",\n".join("{" + ",".join(map(_hex, leaf)) + "}" for _, _, leaf in padded),
    }
    return text, {"trees": len(trees), "depth": depth, "lanes": LANES}


def _base_score(stored: str) -> float:
    """xgboost writes the base score as "5E-1" (2.x) or "[5E-1]" (3.x, one per target)."""
    values = [v for v in stored.strip("[]").split(",") if v.strip()]
    if len(values) != 1:
        raise UnsupportedError(f"the booster has {len(values)} base scores, not one")
    return float(values[0])


def _depth(tree: dict[str, Any], node: int) -> int:
    """Levels of splits below `node` (0 for a leaf)."""
    left, right = tree["left_children"][node], tree["right_children"][node]
    if left == -1:
        return 0
    return 1 + max(_depth(tree, left), _depth(tree, right))


def _padded(tree: dict[str, Any], depth: int, columns: int) -> tuple[list[int], list[float], list[float]]:
    """The complete tree of `depth` levels: column indices (into the two copies of a row), thresholds, leaf values."""
    inner = 2**depth - 1
    index, threshold, leaf = [0] * inner, [0.0] * inner, [0.0] * (inner + 1)

    def place(node: int, position: int) -> None:
        left = tree["left_children"][node]
        if position >= inner:  # the last level: only leaves reach it (depth is the deepest tree's)
            leaf[position - inner] = float(np.float32(tree["split_conditions"][node]))
            return
        if left == -1:  # a leaf above the last level: both sides lead to copies of it
            place(node, 2 * position + 1)
            place(node, 2 * position + 2)
            return
        feature = int(tree["split_indices"][node])
        index[position] = feature + (0 if int(tree["default_left"][node]) else columns)
        threshold[position] = float(np.float32(tree["split_conditions"][node]))
        place(left, 2 * position + 1)
        place(tree["right_children"][node], 2 * position + 2)

    place(0, 0)
    return index, threshold, leaf


def _hex(value: float | np.floating) -> str:
    """An exact C float literal."""
    return float(np.float32(value)).hex() + "f"


_C = r"""
#include <math.h>
#include <stdint.h>

#define TREES %(trees)d
#define DEPTH %(depth)d
#define INNER ((1 << DEPTH) - 1)
#define COLUMNS %(columns)d
#define LANES %(lanes)d

static const int32_t INDEX[TREES][INNER] = {
%(index)s
};
static const float THRESHOLD[TREES][INNER] = {
%(threshold)s
};
static const float LEAF[TREES][INNER + 1] = {
%(leaf)s
};

/* xgboost's sigmoid (common::Sigmoid): 1 / (1 + exp(min(-x, 88.7))) in float32 */
static float sigmoid(float margin) {
  float x = -margin;
  if (x > 88.7f) x = 88.7f;
  return 1.0f / (expf(x) + 1.0f);
}

/* The two copies of `n` rows, lane-major: copy[lane][column] has NaN as -inf, copy[lane][COLUMNS + column] as +inf. */
static void copy_rows(const float* rows, int64_t n, float copy[LANES][2 * COLUMNS]) {
  for (int64_t r = 0; r < n; ++r) {
    const float* row = rows + r * COLUMNS;
    for (int32_t j = 0; j < COLUMNS; ++j) {
      float v = row[j];
      int missing = isnan(v);
      copy[r][j] = missing ? -INFINITY : v;
      copy[r][COLUMNS + j] = missing ? INFINITY : v;
    }
  }
}

static void walk(float copy[LANES][2 * COLUMNS], float* sum) {
  for (int32_t t = 0; t < TREES; ++t) {
    const int32_t* index = INDEX[t];
    const float* threshold = THRESHOLD[t];
    int32_t node[LANES];
    for (int r = 0; r < LANES; ++r) node[r] = 0;
    for (int d = 0; d < DEPTH; ++d) {
      for (int r = 0; r < LANES; ++r) {
        int32_t k = node[r];
        node[r] = 2 * k + 1 + (copy[r][index[k]] >= threshold[k]);
      }
    }
    for (int r = 0; r < LANES; ++r) sum[r] += LEAF[t][node[r] - INNER];
  }
}

/* One row alone (the rows left over after the blocks of LANES, a single-row call): no padding rows to walk. */
static void walk_one(const float* copy, float* sum) {
  for (int32_t t = 0; t < TREES; ++t) {
    int32_t k = 0;
    for (int d = 0; d < DEPTH; ++d) k = 2 * k + 1 + (copy[INDEX[t][k]] >= THRESHOLD[t][k]);
    *sum += LEAF[t][k - INNER];
  }
}


void %(entry)s(const float* rows, int64_t nrow, int32_t ncol, float* out) {
  float copy[LANES][2 * COLUMNS];
  float sum[LANES];
  const float base_margin = -logf(1.0f / %(base_score)s - 1.0f); /* xgboost's ProbToMargin, in float32 */
  if (ncol != COLUMNS) {
    for (int64_t i = 0; i < nrow; ++i) out[i] = NAN;
    return;
  }
  for (int64_t start = 0; start < nrow; start += LANES) {
    int64_t n = nrow - start < LANES ? nrow - start : LANES;
    copy_rows(rows + start * COLUMNS, n, copy);
    for (int r = 0; r < LANES; ++r) sum[r] = base_margin;
    if (n == LANES) walk(copy, sum); else for (int64_t r = 0; r < n; ++r) walk_one(copy[r], sum + r);
    for (int64_t r = 0; r < n; ++r) out[start + r] = sigmoid(sum[r]);
  }
}
"""
