"""The branch-free engine on small boosters trained here on synthetic rows: equal to xgboost at, beside and missing at
every threshold; the boosters it refuses go to TL2cgen, and those both refuse to xgboost (a CompileError)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from bento.model import compiled
from training import branchless, compiler

COLUMNS = 12


def synthetic(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 rows with a fifth of the values missing, and labels that depend on several columns and on missingness."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, COLUMNS)).astype(np.float32)
    x[:, 3] = rng.integers(0, 4, size=rows)  # a few distinct values: splits land between integers
    score = x[:, 0] - 0.5 * x[:, 1] + (x[:, 3] > 1) + np.where(rng.random(rows) < 0.3, 1.0, 0.0)
    x[rng.random(x.shape) < 0.2] = np.nan
    score = score + np.where(np.isnan(x[:, 2]), 1.5, 0.0)
    y = (np.nan_to_num(score) + rng.normal(scale=0.5, size=rows) > 0.5).astype(np.float32)
    return x, y


def train(objective: str = "binary:logistic", **params: object) -> xgb.Booster:
    x, y = synthetic(800, seed=1)
    settings = {"objective": objective, "max_depth": 3, "eta": 0.3, "min_child_weight": 25, "nthread": 1, "seed": 0}
    booster = xgb.train(settings | params, xgb.DMatrix(x, label=y), num_boost_round=25)
    booster.set_param({"nthread": 1})
    return booster


def splits(booster: xgb.Booster) -> list[tuple[int, np.float32]]:
    """Every (column, threshold) of the booster's numeric splits."""
    found = []
    for tree in json.loads(booster.save_raw(raw_format="json"))["learner"]["gradient_booster"]["model"]["trees"]:
        for node, left in enumerate(tree["left_children"]):
            if left != -1:
                found.append((int(tree["split_indices"][node]), np.float32(tree["split_conditions"][node])))
    return found


def rows_at_every_threshold(booster: xgb.Booster, base_rows: int = 64) -> np.ndarray:
    """For each split: rows with its column on the threshold, one float32 step below and above, and missing."""
    base, _ = synthetic(base_rows, seed=2)
    blocks = []
    for column, threshold in splits(booster):
        for value in (threshold, np.nextafter(threshold, -np.inf), np.nextafter(threshold, np.inf), np.nan):
            block = base.copy()
            block[:, column] = value
            blocks.append(block)
    return np.concatenate(blocks)


def build(
    booster: xgb.Booster, folder: Path, engines: tuple[str, ...] = (compiled.BRANCHLESS,)
) -> compiled.CompiledTrees:
    """The booster compiled by the first of `engines` that can (by default only the branch-free one), loaded."""
    manifest = compiler.compile_booster(booster, folder / compiled.COMPILED_DIR, engines=engines)
    trees = compiled.CompiledTrees.load(folder, COLUMNS)
    assert trees.backend == manifest["backend"]
    return trees


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    return train()


@pytest.fixture(scope="module")
def branch_free(booster, tmp_path_factory) -> compiled.CompiledTrees:
    """The test booster as `readmission import` compiles it: every engine in order, the branch-free one first."""
    return build(booster, tmp_path_factory.mktemp("branchless"), engines=compiled.ENGINES)


def test_the_booster_exercises_padding_and_both_default_directions(booster):
    """What the engine must get right is in the test booster: leaves above the last level, missing going either way."""
    trees = json.loads(booster.save_raw(raw_format="json"))["learner"]["gradient_booster"]["model"]["trees"]
    depths = {branchless._depth(tree, 0) for tree in trees}
    defaults = {
        int(d)
        for tree in trees
        for d, left in zip(tree["default_left"], tree["left_children"], strict=True)
        if left != -1
    }
    shallow_leaves = any(
        left == -1 and node != 0 and _level(tree, node) < max(depths) for tree in trees
        for node, left in enumerate(tree["left_children"])
    )  # fmt: skip
    assert shallow_leaves and defaults == {0, 1}


def _level(tree: dict, node: int) -> int:
    """How many splits lie above `node`."""
    pairs = zip(tree["left_children"], tree["right_children"], strict=True)
    parents = {child: parent for parent, pair in enumerate(pairs) for child in pair if child != -1}
    level = 0
    while node in parents:
        node, level = parents[node], level + 1
    return level


def test_branch_free_is_the_first_engine_and_equals_xgboost_at_beside_and_missing_at_every_threshold(
    booster, branch_free
):
    rows = rows_at_every_threshold(booster)
    expected = booster.inplace_predict(rows, validate_features=False)
    got = branch_free.probabilities(rows)
    assert branch_free.backend == compiled.BRANCHLESS
    assert np.abs(got.astype(np.float64) - expected).max() <= compiled.TOLERANCE
    assert (got == expected).mean() > 0.99  # the same float32 sums and sigmoid: equal, not merely close


def test_a_row_alone_equals_xgboost_at_beside_and_missing_at_every_threshold(booster, branch_free):
    """A single-row call walks the row alone, not in a block of eight: the same comparisons, the same answers."""
    rows = rows_at_every_threshold(booster, base_rows=1)
    expected = booster.inplace_predict(rows, validate_features=False)
    got = np.concatenate([branch_free.probabilities(rows[i : i + 1]) for i in range(len(rows))])
    assert np.abs(got.astype(np.float64) - expected).max() <= compiled.TOLERANCE


@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 17])
def test_any_number_of_rows_scores_as_xgboost(booster, branch_free, count):
    """Blocks of eight rows and what is left over: every row scores as alone."""
    rows, _ = synthetic(count, seed=3)
    expected = booster.inplace_predict(rows, validate_features=False) if count else np.empty(0)
    assert branch_free.probabilities(rows) == pytest.approx(expected, abs=compiled.TOLERANCE)


def test_trees_shallower_than_others_pad_to_the_deepest(tmp_path):
    """A booster with trees of single leaves or one split beside deeper ones (gamma stops them) scores as xgboost."""
    shallow = train(gamma=4.0)
    trees = json.loads(shallow.save_raw(raw_format="json"))["learner"]["gradient_booster"]["model"]["trees"]
    depths = [branchless._depth(tree, 0) for tree in trees]
    assert min(depths) < max(depths), depths
    rows = rows_at_every_threshold(shallow)
    expected = shallow.inplace_predict(rows, validate_features=False)
    got = build(shallow, tmp_path).probabilities(rows)
    assert np.abs(got.astype(np.float64) - expected).max() <= compiled.TOLERANCE


@pytest.mark.parametrize(
    ("params", "refusal"),
    [
        ({"objective": "multi:softprob", "num_class": 3}, "only binary:logistic"),
        ({"objective": "binary:logitraw"}, "only binary:logistic"),
        ({"booster": "dart"}, "only gbtree"),
    ],
)
def test_the_engine_refuses_what_it_does_not_evaluate(params, refusal):
    x, y = synthetic(300, seed=4)
    labels = (np.arange(len(y)) % 3).astype(np.float32) if params.get("num_class") else y
    settings = {"objective": "binary:logistic", "max_depth": 2, "nthread": 1} | params
    booster = xgb.train(settings, xgb.DMatrix(x, label=labels), num_boost_round=3)
    with pytest.raises(branchless.UnsupportedError, match=refusal):
        branchless.source(booster, compiled.ENTRY_POINT)


def test_the_engine_refuses_categorical_splits():
    import pandas as pd

    x, _ = synthetic(400, seed=5)
    frame = pd.DataFrame(x[:, :3], columns=["a", "b", "c"])
    frame["ward"] = pd.Categorical(np.arange(len(frame)) % 5)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2, "nthread": 1, "max_cat_to_onehot": 1},
        xgb.DMatrix(frame, label=(np.arange(len(frame)) % 5 < 2).astype(np.float32), enable_categorical=True),
        num_boost_round=3,
    )
    with pytest.raises(branchless.UnsupportedError, match="categorical"):
        branchless.source(booster, compiled.ENTRY_POINT)


def test_a_booster_the_engine_refuses_is_compiled_by_tl2cgen_and_says_why(booster, tmp_path, monkeypatch):
    monkeypatch.setattr(branchless, "MAX_DEPTH", 2)
    trees = build(booster, tmp_path, engines=compiled.ENGINES)
    manifest = json.loads((tmp_path / compiled.COMPILED_DIR / compiled.MANIFEST_FILE).read_text())
    assert trees.backend == compiled.TL2CGEN == manifest["backend"]
    assert "more than 2" in manifest["refused"][compiled.BRANCHLESS]
    rows = rows_at_every_threshold(booster)
    expected = booster.inplace_predict(rows, validate_features=False)
    assert np.abs(trees.probabilities(rows).astype(np.float64) - expected).max() <= compiled.TOLERANCE


def test_a_booster_every_engine_refuses_is_a_compile_error_naming_each(tmp_path):
    squared = train(objective="reg:squarederror")
    with pytest.raises(compiler.CompileError, match=r"branchless: only binary:logistic.*tl2cgen: only binary logistic"):
        compiler.compile_booster(squared, tmp_path / compiled.COMPILED_DIR)
    assert not (tmp_path / compiled.COMPILED_DIR).exists()


def test_an_artifact_of_an_unknown_engine_is_refused_at_load(booster, branch_free, tmp_path):
    folder = tmp_path / compiled.COMPILED_DIR
    build(booster, tmp_path)
    manifest = json.loads((folder / compiled.MANIFEST_FILE).read_text())
    (folder / compiled.MANIFEST_FILE).write_text(json.dumps(manifest | {"backend": "quickscorer"}))
    with pytest.raises(compiled.CompiledModelError, match="unknown engine: quickscorer"):
        compiled.CompiledTrees.load(tmp_path, COLUMNS)
