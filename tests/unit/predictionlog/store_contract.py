"""The contract every prediction log store keeps (bento/predictionlog/store.py's LogStore), shared by the store tests.

`StoreContract` holds the tests; a test module subclasses it as `Test<Store>` with a `store` fixture yielding a fresh
store and a way to read it behind its back (its own connection): SQLite in tests/unit/predictionlog/test_log_store.py,
PostgreSQL on a real server in tests/postgres/test_store_contract.py. What is appended is read back, feedback is all
or nothing, the retention purge erases only old encoded rows, predictions past the keeping period are erased with
their outcomes and shadow rows in bounded batches (by several erasers at once too), concurrent feedback about the
same predictions never records two outcomes; the monitor's lease is held by one holder at a time and lapses, the
labelled rows' change marker moves with outcomes recorded or erased, every logged probability (shadow rows too) comes
back scored and its marker moves with predictions added or erased, the stored figures round-trip. `batch` makes
scored rows for these and for the writer's tests.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from bento import features
from bento.core.ids import PredictionIds, run
from bento.core.scoring import ScoredBatch
from bento.predictionlog.store import (
    ConflictingOutcomeError,
    LogStore,
    Recorded,
    ShadowBatch,
    StoredFigures,
    UnknownPredictionError,
)
from bento.quality.windows import Scored
from tests.helpers import ID_RUNS, LOGGED, SHADOW_LOGGED, logged, queued, run_ids, shadow_logged

DAY = 86_400.0
CONTESTED = 3000  # ids several calls give opposite outcomes for at once: enough for their lookups to overlap
WIDTH = len(features.COLUMNS)
IDS = PredictionIds()

Query = Callable[[str], list[tuple]]


def batch(rows: int, when: float | None = None, version: str = "3", seed: int = 0) -> ScoredBatch:
    """`rows` scored rows stamped `when` (now by default), with random encoded rows and probabilities."""
    when = time.time() if when is None else when
    rng = np.random.default_rng(seed)
    probabilities = rng.random(rows, dtype=np.float32)
    return ScoredBatch(
        ids=IDS.take(rows, when),
        time=when,
        model_version=version,
        probabilities=probabilities,
        labels=(probabilities > 0.5).astype(np.int64),
        matrix=rng.random((rows, WIDTH), dtype=np.float32),
    )


def scores(rows: ScoredBatch, version: str, probabilities: list[float], labels: list[int]) -> ShadowBatch:
    """The challenger's scores of a served batch."""
    return ShadowBatch(rows.ids[0], version, np.array(probabilities, np.float32), np.array(labels, np.int64))


def race(log: LogStore, calls: list[dict[str, int]]) -> list[Recorded | Exception]:
    """The calls' results (or errors), each in its own thread, released together."""
    start = threading.Barrier(len(calls))
    results: list[Recorded | Exception] = [RuntimeError("no result")] * len(calls)

    def call(n: int) -> None:
        start.wait()
        try:
            results[n] = log.record_outcomes(calls[n], time.time())
        except Exception as error:  # the result the test compares
            results[n] = error

    threads = [threading.Thread(target=call, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


# An earlier release's tables (one row per prediction), as both stores created them (SQLite takes the types too).
EARLIER_TABLES = (
    "CREATE TABLE predictions (id TEXT PRIMARY KEY, time DOUBLE PRECISION NOT NULL, model_version TEXT NOT NULL, "
    "probability DOUBLE PRECISION NOT NULL, label INTEGER NOT NULL, features BYTEA)",
    "CREATE TABLE outcomes (prediction_id TEXT PRIMARY KEY, readmitted INTEGER NOT NULL, "
    "time DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE shadow_predictions (prediction_id TEXT NOT NULL, model_version TEXT NOT NULL, "
    "probability DOUBLE PRECISION NOT NULL, label INTEGER NOT NULL, PRIMARY KEY (prediction_id, model_version))",
)
Earlier = Callable[[list[tuple[str, list[tuple]]]], tuple[LogStore, Query]]


class StoreContract:
    """The store tests; a subclass named Test<Store> provides the `store` fixture: (store, query), and `earlier`: a
    function that runs statements (each with its rows) on a new database, then opens a store on it."""

    def test_an_earlier_releases_log_is_converted_once_when_opened(self, earlier: Earlier):
        now = time.time()
        old, recent = batch(3, when=now - 40 * DAY, version="1", seed=1), batch(2, when=now - DAY, version="2", seed=2)
        marker = "%s" if "Postgres" in type(self).__name__ else "?"
        rows = [
            (i, scored.time, scored.model_version, float(p), int(flag), row.tobytes() if scored is old else None)
            for scored in (old, recent)
            for i, p, flag, row in zip(scored.ids, scored.probabilities, scored.labels, scored.matrix, strict=True)
        ]
        insert = "INSERT INTO {} VALUES ({})"
        log, query = earlier(
            [(statement, []) for statement in EARLIER_TABLES]
            + [
                (insert.format("predictions", ", ".join([marker] * 6)), rows),
                (insert.format("shadow_predictions", ", ".join([marker] * 4)), [(recent.ids[0], "3", 0.5, 1)]),
                (insert.format("outcomes", ", ".join([marker] * 3)), [(old.ids[1], 1, now), (recent.ids[0], 0, now)]),
            ]
        )
        scored = log.scored(since=0)
        assert by_version(scored) == {"1": rows_of(old), "2": rows_of(recent), "3": [(0.5, 1)]}
        labelled = log.labelled(since=0)
        assert labelled.model_version.tolist() == ["1", "2", "3"] and labelled.outcome.tolist() == [1, 0, 0]
        assert labelled.probability.tolist() == [float(old.probabilities[1]), float(recent.probabilities[0]), 0.5]
        assert logged(query(LOGGED))[old.ids[2]][4] == old.matrix[2].tobytes()
        assert log.record_outcomes({recent.ids[1]: 1}, now) == Recorded(recorded=1, unchanged=0)
        assert query("SELECT COUNT(*) FROM outcomes") == [(3,)]

    def test_appended_rows_come_back_labelled_once_they_have_an_outcome(self, store):
        log, _ = store
        scored = batch(4, version="7")
        log.append(queued(scored), keep_features=False)
        first, _, third, _ = scored.ids
        when = time.time()
        assert log.record_outcomes({third: 0}, when) == Recorded(recorded=1, unchanged=0)
        assert log.record_outcomes({first: 1}, when + 5) == Recorded(recorded=1, unchanged=0)
        labelled = log.labelled(since=scored.time - 1)
        assert labelled.outcome.tolist() == [1, 0]
        assert labelled.recorded.tolist() == [when + 5, when]  # when each outcome was recorded, in the ids' order
        assert labelled.label.tolist() == [scored.labels[0], scored.labels[2]]
        assert labelled.probability.tolist() == scored.probabilities[[0, 2]].astype(np.float64).tolist()  # exact
        assert labelled.model_version.tolist() == ["7", "7"]
        assert labelled.time.tolist() == [scored.time, scored.time]
        assert len(log.labelled(since=scored.time + 1).outcome) == 0

    def test_every_logged_probability_comes_back_scored_outcome_or_not_oldest_first(self, store):
        log, _ = store
        now = time.time()
        old, first, second = batch(2, when=now - 10 * DAY, seed=1), batch(3, when=now - 5), batch(2, version="8")
        log.append(queued(second, old), keep_features=False)  # written out of order: read back in the order of the ids
        log.append(queued(first), keep_features=False)
        log.record_outcomes({first.ids[1]: 1}, now)  # an outcome changes nothing here
        scored = log.scored(since=now - DAY)
        assert scored.model_version.tolist() == ["3", "8"] and scored.rows.tolist() == [3, 2]
        assert scored.time.tolist() == [first.time, second.time]
        expected = np.concatenate([first.probabilities, second.probabilities])
        assert scored.probability.tolist() == expected.tolist()  # exact
        assert scored.label.tolist() == [*first.labels.tolist(), *second.labels.tolist()]
        assert len(log.scored(since=0).probability) == 7
        assert len(log.scored(since=second.time + 1).probability) == 0

    def test_the_challengers_shadow_rows_come_back_scored_at_the_time_of_their_prediction(self, store):
        log, _ = store
        now = time.time()
        old, served = batch(2, when=now - 10 * DAY, seed=1), batch(3, when=now - 5, seed=2)
        shadow = [scores(old, "9", [0.25] * 2, [1] * 2), scores(served, "9", [0.25] * 3, [1] * 3)]
        log.append(queued(old, served), keep_features=False, shadow=shadow)
        scored = log.scored(since=now - DAY)
        assert by_version(scored) == {"3": rows_of(served), "9": [(0.25, 1)] * 3}
        assert scored.time.tolist() == [served.time] * 2 and scored.rows.tolist() == [3, 3]

    def test_the_scored_marker_moves_with_predictions_added_or_erased_only(self, store):
        log, _ = store
        now = time.time()
        empty = log.scored_marker()
        old, recent = batch(3, when=now - 200 * DAY, seed=1), batch(3, when=now - DAY, seed=2)
        log.append(queued(old, recent), keep_features=False)
        added = log.scored_marker()
        assert added != empty
        log.record_outcomes({recent.ids[0]: 0}, now)
        assert log.scored_marker() == added, "outcomes change no estimate"
        log.append(queued(batch(1, seed=3)), keep_features=False)
        newer = log.scored_marker()
        assert newer != added
        log.erase_predictions(before=now - 120 * DAY)
        assert log.scored_marker() not in (newer, added, empty)

    def test_shadow_rows_come_back_labelled_under_their_version_beside_the_served_rows(self, store):
        log, _ = store
        now = time.time()
        scored, unscored = batch(5, now, version="7", seed=3), batch(2, now, version="7", seed=4)
        shadow = scores(scored, "8", [0.125 * n for n in range(5)], [n % 2 for n in range(5)])
        log.append(queued(scored, unscored), keep_features=False, shadow=[shadow])
        log.record_outcomes({scored.ids[n]: n % 2 for n in (0, 1, 3)} | {unscored.ids[0]: 1}, time.time())
        labelled = log.labelled(since=scored.time - 1)
        served, challenger = labelled.model_version == "7", labelled.model_version == "8"
        assert labelled.probability[served].tolist() == [
            *scored.probabilities[[0, 1, 3]].astype(np.float64).tolist(),
            float(unscored.probabilities[0]),
        ]
        assert labelled.probability[challenger].tolist() == [0.0, 0.125, 0.375], "in the order of the ids"
        assert labelled.label[challenger].tolist() == [0, 1, 1]
        assert labelled.outcome[served].tolist() == [0, 1, 1, 1] and labelled.outcome[challenger].tolist() == [0, 1, 1]
        assert labelled.time.tolist() == [scored.time] * 7
        assert len(log.labelled(since=scored.time + 1).outcome) == 0

    def test_an_unknown_id_records_nothing(self, store):
        log, query = store
        scored = batch(2)
        log.append(queued(scored), keep_features=False)
        unknown = IDS.take(1, time.time() - DAY)[0]
        beyond = run(scored.ids[0], 3)[2]  # the batch's next id, never issued with it
        shouted = scored.ids[1].upper()  # ids are known exactly as issued
        for stranger in {unknown, beyond, shouted} - {scored.ids[1]}:  # (an id of digits alone reads the same)
            with pytest.raises(UnknownPredictionError) as raised:
                log.record_outcomes({scored.ids[0]: 1, stranger: 0}, time.time())
            assert raised.value.ids == [stranger]
        assert query("SELECT COUNT(*) FROM outcomes") == [(0,)]

    def test_a_conflicting_outcome_records_nothing_and_the_same_outcome_again_changes_nothing(self, store):
        log, query = store
        scored = batch(3)
        log.append(queued(scored), keep_features=False)
        a, b, c = scored.ids
        log.record_outcomes({a: 1}, time.time())
        with pytest.raises(ConflictingOutcomeError) as raised:
            log.record_outcomes({a: 0, b: 1}, time.time())
        assert raised.value.ids == [a]
        assert sorted(query("SELECT prediction_id, readmitted FROM outcomes")) == [(a, 1)]
        assert log.record_outcomes({a: 1, c: 0}, time.time()) == Recorded(recorded=1, unchanged=1)
        assert sorted(query("SELECT prediction_id, readmitted FROM outcomes")) == sorted([(a, 1), (c, 0)])

    def test_encoded_rows_round_trip_as_float32_bytes_only_where_opted_in(self, store):
        log, query = store
        kept, not_kept = batch(3, seed=1), batch(2, seed=2)
        log.append(queued(kept), keep_features=True)
        log.append(queued(not_kept), keep_features=False)
        stored = {prediction_id: row[4] for prediction_id, row in logged(query(LOGGED)).items()}
        for prediction_id, row in zip(kept.ids, kept.matrix, strict=True):
            np.testing.assert_array_equal(np.frombuffer(stored[prediction_id], dtype=np.float32), row)
        assert all(stored[prediction_id] is None for prediction_id in not_kept.ids)

    def test_the_purge_erases_only_encoded_rows_older_than_the_cut_off(self, store):
        """The writer runs the purge every PURGE_SECONDS (bento/predictionlog/writer.py) with the cut-off
        READMISSION_PREDICTION_LOG_RETENTION_DAYS before now; here the store method is called directly."""
        log, query = store
        now = time.time()
        old, recent = batch(3, when=now - 31 * DAY, seed=3), batch(2, when=now - 29 * DAY, seed=4)
        log.append(queued(old, recent), keep_features=True)
        assert log.purge_features(before=now - 30 * DAY) == 3
        stored = {prediction_id: row[4] for prediction_id, row in logged(query(LOGGED)).items()}
        assert len(stored) == 5, "the predictions themselves are kept"
        assert all(stored[prediction_id] is None for prediction_id in old.ids)
        assert all(stored[prediction_id] is not None for prediction_id in recent.ids)
        assert log.purge_features(before=now - 30 * DAY) == 0

    def test_predictions_past_the_keeping_period_are_erased_with_their_outcomes_in_bounded_batches(self, store):
        """The writer erases one batch per flush (bento/predictionlog/writer.py); here the store method directly."""
        log, query = store
        now = time.time()
        old = [batch(70, when=now - (130 + n) * DAY, seed=n) for n in range(3)]  # 210 rows, the oldest first
        kept = batch(30, when=now - 119 * DAY, seed=9)
        log.append(queued(*old, kept), keep_features=True)
        log.record_outcomes({i: 1 for i in old[0].ids[:5] + old[2].ids[:5] + kept.ids[:7]}, now)
        erased = []
        while not erased or erased[-1]:
            erased.append(log.erase_predictions(before=now - 120 * DAY, rows=150))
        assert erased == [140, 70, 0], "whole batches, at most 150 rows (at least one batch)"
        assert run_ids(query(ID_RUNS)) == set(kept.ids)
        assert {i for (i,) in query("SELECT prediction_id FROM outcomes")} == set(kept.ids[:7])
        assert {i for (i,) in query("SELECT prediction_id FROM labelled_scores")} == set(kept.ids[:7])
        assert log.erase_predictions(before=now - 120 * DAY) == 0
        assert len(log.labelled(since=0).outcome) == 7

    def test_shadow_rows_are_written_with_their_prediction_and_erased_with_it(self, store):
        """The challenger's rows (bento/predictionlog/writer.py) go in with the served rows and out with them, in
        the same batch of the erasure."""
        log, query = store
        now = time.time()
        old = [batch(12, when=now - (200 - n) * DAY, seed=n) for n in range(2)]
        kept = batch(20, when=now - DAY, seed=2)
        shadow = [scores(rows, "9", [0.25] * len(rows.ids), [0] * len(rows.ids)) for rows in [*old, kept]]
        shadow.append(scores(old[0], "10", [0.75] * 12, [1] * 12))
        log.append(queued(*old, kept), keep_features=False, shadow=shadow)
        ids_of = {rows.ids[0]: rows.ids for rows in [*old, kept]}
        written = [
            (i, scored.model_version, float(p), int(flag))
            for scored in shadow
            for i, p, flag in zip(ids_of[scored.first_id], scored.probabilities, scored.labels, strict=True)
        ]
        assert sorted(shadow_logged(query(SHADOW_LOGGED))) == sorted(written)
        assert log.erase_predictions(before=now - 120 * DAY, rows=12) == 12
        served = run_ids(query(ID_RUNS))
        assert {i for i, *_ in shadow_logged(query(SHADOW_LOGGED))} == served
        assert query("SELECT COUNT(*) FROM shadow_batches WHERE model_version = '10'") == [(0,)]
        while log.erase_predictions(before=now - 120 * DAY, rows=12):
            pass
        assert {i for i, *_ in shadow_logged(query(SHADOW_LOGGED))} == set(kept.ids)

    def test_paired_rows_are_the_labelled_predictions_since_a_time_with_each_challengers_score(self, store):
        log, _ = store
        now = time.time()
        old, recent, unscored = batch(4, when=now - 100 * DAY, seed=3), batch(5, seed=4), batch(3, seed=5)
        shadow = [scores(old, "9", [0.125 * n for n in range(4)], [n % 2 for n in range(4)])]
        shadow.append(scores(recent, "9", [0.125 * (n + 4) for n in range(5)], [n % 2 for n in range(5)]))
        shadow.append(scores(recent, "10", [0.5] * 5, [1] * 5))  # a second challenger
        log.append(queued(old, recent, unscored), keep_features=False, shadow=shadow)
        log.record_outcomes({i: n % 2 for n, i in enumerate(old.ids + recent.ids[:3] + unscored.ids)}, now)
        log.record_outcomes({recent.ids[3]: 1}, now + 7)
        paired = log.paired(since=now - 90 * DAY)
        served = dict(zip(recent.ids, recent.probabilities.astype(np.float64).tolist(), strict=True))
        recorded = [now] * 3 + [now + 7]
        labelled = list(enumerate(recent.ids[:4]))
        expected = [("3", "10", recent.time, served[i], 0.5, n % 2, recorded[n]) for n, i in labelled] + [
            ("3", "9", recent.time, served[i], 0.125 * (n + 4), n % 2, recorded[n]) for n, i in labelled
        ]  # fmt: skip
        columns = (paired.champion_version, paired.challenger_version, paired.time, paired.champion,
                   paired.challenger, paired.outcome, paired.recorded)  # fmt: skip
        rows = list(zip(*(column.tolist() for column in columns), strict=True))
        assert sorted(rows) == sorted(expected)  # not the unlabelled, the old, nor the unscored
        assert len(log.paired(since=0).outcome) == 12
        assert len(log.paired(since=now + 1).outcome) == 0 and log.paired(since=now + 1).champion.dtype == np.float64

    def test_erasers_at_once_erase_each_old_prediction_once_and_nothing_newer(self, store):
        log, query = store
        now = time.time()
        old = [batch(100, when=now - (200 - n / 100) * DAY, seed=n) for n in range(30)]
        kept = batch(50, when=now - DAY, seed=2)
        log.append(queued(*old, kept), keep_features=False)
        erased: list[int] = []
        start = threading.Barrier(3)

        def erase() -> None:
            start.wait()
            while count := log.erase_predictions(before=now - 120 * DAY, rows=250):
                erased.append(count)

        threads = [threading.Thread(target=erase) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sum(erased) == 3000 and all(count % 100 == 0 for count in erased), "whole batches, each once"
        assert run_ids(query(ID_RUNS)) == set(kept.ids)

    def test_the_lease_has_one_holder_until_it_lapses_or_is_released(self, store):
        log, _ = store
        now = time.time()
        assert log.take_lease("a", now, 10)
        assert not log.take_lease("b", now + 1, 10)
        assert log.take_lease("a", now + 5, 10), "the holder renews"
        assert not log.take_lease("b", now + 14, 10), "renewed until now + 15"
        assert log.take_lease("b", now + 16, 10), "lapsed: another takes it"
        assert not log.take_lease("a", now + 17, 10)
        log.release_lease("a")  # not the holder: nothing happens
        assert not log.take_lease("a", now + 18, 10)
        log.release_lease("b")
        assert log.take_lease("a", now + 19, 10), "released: taken at once"

    def test_holders_racing_for_a_free_lease_get_it_once(self, store):
        log, _ = store
        now, won = time.time(), []
        start = threading.Barrier(6)

        def take(holder: str) -> None:
            start.wait()
            if log.take_lease(holder, now, 30):
                won.append(holder)

        threads = [threading.Thread(target=take, args=(f"h{n}",)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(won) == 1, won

    def test_the_change_marker_moves_with_outcomes_recorded_or_erased_only(self, store):
        log, _ = store
        now = time.time()
        empty = log.labelled_marker()
        old, recent = batch(3, when=now - 200 * DAY, seed=1), batch(3, when=now - DAY, seed=2)
        log.append(queued(old, recent), keep_features=False)
        assert log.labelled_marker() == empty, "predictions without outcomes change no figure"
        log.record_outcomes({old.ids[0]: 1, recent.ids[0]: 0}, now)
        recorded = log.labelled_marker()
        assert recorded != empty
        log.record_outcomes({recent.ids[0]: 0}, now + 1)  # the same outcome again: nothing new
        assert log.labelled_marker() == recorded
        log.erase_predictions(before=now - 120 * DAY)
        assert log.labelled_marker() not in (recorded, empty)

    def test_stored_figures_round_trip_and_are_replaced(self, store):
        log, _ = store
        assert log.stored_figures() is None
        compared = '[{"champion_version": "5", "challenger_version": "6", "windows": {"30d": {"rows": 2}}}]'
        estimated = '{"5": {"30d": {"scored_rows": 20}}}'
        first = StoredFigures(1.5, "2:3.25", '{"5": {"30d": {"labelled_rows": 2}}}', compared, estimated)
        log.save_figures(first)
        assert log.stored_figures() == first
        second = StoredFigures(computed_at=2.5, marker="3:4.0", figures="{}", comparison="[]", estimated="{}")
        log.save_figures(second)
        assert log.stored_figures() == second

    def test_concurrent_feedback_about_the_same_predictions_records_one_outcome_each_and_counts_it_once(self, store):
        """Calls racing over overlapping ids (each in its own order): with the same outcomes all succeed and the
        new outcomes are counted once in all; with opposite outcomes one call wins and the others record nothing."""
        log, query = store
        rounds, callers = 3, 4
        for round_ in range(rounds):
            scored, contested = batch(600, seed=round_), batch(CONTESTED, seed=round_)
            log.append(queued(scored, contested), keep_features=False)
            rng = random.Random(round_)
            subsets = [rng.sample(scored.ids, 400) for _ in range(callers)]  # overlapping, each in its own order
            same = race(log, [{i: 1 for i in subset} for subset in subsets])
            assert all(isinstance(result, Recorded) for result in same), same
            assert sum(result.recorded for result in same) == len(set().union(*subsets))
            opposite = race(log, [{i: caller % 2 for i in contested.ids} for caller in range(callers)])
            listed = ",".join(f"'{i}'" for i in contested.ids)
            (kept,) = {
                outcome for (outcome,) in query(f"SELECT readmitted FROM outcomes WHERE prediction_id IN ({listed})")
            }
            for caller, result in enumerate(opposite):
                assert isinstance(result, Recorded if caller % 2 == kept else ConflictingOutcomeError), opposite
            assert sum(result.recorded for result in opposite if isinstance(result, Recorded)) == CONTESTED


def by_version(scored: Scored) -> dict[str, list[tuple[float, int]]]:
    """Each version's logged probabilities and labels, in the order the log returned them."""
    versions = np.repeat(scored.model_version, scored.rows)
    rows = list(zip(scored.probability.tolist(), scored.label.tolist(), strict=True))
    return {version: [row for row, v in zip(rows, versions, strict=True) if v == version] for version in set(versions)}


def rows_of(scored: ScoredBatch) -> list[tuple[float, int]]:
    """A scored batch's probabilities (float32, as logged) and labels."""
    return list(zip(scored.probabilities.astype(np.float32).tolist(), scored.labels.tolist(), strict=True))
