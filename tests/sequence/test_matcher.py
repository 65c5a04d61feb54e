"""Sequence matching: batch (dense and candidate-restricted), online, any PlaceIndex, route contrast."""

from __future__ import annotations

import numpy as np
import pytest

import structvpr
from structvpr.index.place_index import PlaceIndex
from structvpr.sequence import OnlineSequenceMatcher, SequenceSettings, match_sequences
from structvpr.sequence.contrast import RouteContrast
from structvpr.sequence.map_rows import MapRows


def _recall_at_1(positions: np.ndarray, truth: np.ndarray, tolerance: int = 1) -> float:
    return float(np.mean(np.abs(positions[:, 0] - truth) <= tolerance))


def test_sequences_find_a_route_that_single_frames_miss(route) -> None:
    database, frames, truth = route
    single = _recall_at_1(match_sequences(frames, database, 1, candidates=None).positions, truth)
    twenty = _recall_at_1(match_sequences(frames, database, 20, candidates=None).positions, truth)
    assert single < 0.2
    assert twenty > 0.9
    assert structvpr.match_sequences is match_sequences


def test_candidate_matcher_with_every_place_as_candidate_equals_dense(route) -> None:
    database, frames, _ = route
    dense = match_sequences(frames, database, 10, candidates=None, top_n=5)
    restricted = match_sequences(frames, database, 10, candidates=len(database), top_n=5)
    np.testing.assert_array_equal(restricted.positions, dense.positions)
    np.testing.assert_allclose(restricted.scores, dense.scores, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(restricted.speeds, dense.speeds)
    np.testing.assert_allclose(restricted.confidence, dense.confidence, rtol=0, atol=1e-5)


def test_few_candidates_keep_almost_every_dense_answer(route) -> None:
    database, frames, truth = route
    dense = match_sequences(frames, database, 20, candidates=None)
    restricted = match_sequences(frames, database, 20, candidates=8)
    assert np.mean(restricted.positions[:, 0] == dense.positions[:, 0]) > 0.95
    assert abs(_recall_at_1(restricted.positions, truth) - _recall_at_1(dense.positions, truth)) <= 0.02


@pytest.mark.parametrize("candidates", [6, None])
def test_online_matcher_equals_batch_frame_for_frame(route, candidates) -> None:
    database, frames, _ = route
    settings = SequenceSettings(length=12, candidates=candidates, contrast_window=30, top_n=3)
    batch = match_sequences(frames, database, 12, candidates=candidates, contrast_window=30, top_n=3)
    online = OnlineSequenceMatcher(database, settings)
    for number, frame in enumerate(frames):
        answer, expected = online.push(frame), batch[number]
        if candidates is None:  # two implementations: equal up to float rounding
            np.testing.assert_array_equal(answer.positions, expected.positions)
            assert answer.score == pytest.approx(expected.score, abs=1e-5)
        else:  # the same computation: bit for bit
            assert (answer.position, answer.id, np.float32(answer.score), answer.speed) == (
                expected.position,
                expected.id,
                expected.score,
                expected.speed,
            )
            assert np.float32(answer.confidence) == expected.confidence
            np.testing.assert_array_equal(answer.positions, expected.positions)
            np.testing.assert_array_equal(answer.scores, expected.scores)
    online.reset()
    again = [online.push(frame).position for frame in frames[:20]]
    assert again == batch.positions[:20, 0].tolist()


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfflat", "ivfpq"])
def test_any_place_index_kind_matches_the_route_and_reports_its_ids(route, kind) -> None:
    database, frames, truth = route
    options = {"nlist": 4} if kind.startswith("ivf") else {}
    if kind == "ivfpq":
        options.update(pq_m=8, pq_nbits=4)
    index = PlaceIndex.build(database, kind=kind, ids=np.arange(len(database)) + 1000, use_gpu=False, **options)
    matches = match_sequences(frames, index, 20, candidates=10)
    np.testing.assert_array_equal(matches.ids, matches.positions + 1000)
    assert _recall_at_1(matches.positions, truth) > 0.85


def test_a_route_driven_backwards_is_found_with_negative_speeds(make_route) -> None:
    database, frames, truth = make_route(speed=-1.0, seed=3)
    forwards = match_sequences(frames, database, 20, candidates=None)
    backwards = match_sequences(frames, database, 20, (-1.2, -1.0, -0.8), candidates=None)
    assert _recall_at_1(backwards.positions, truth) > 0.9
    assert _recall_at_1(backwards.positions, truth) > _recall_at_1(forwards.positions, truth) + 0.3
    assert set(backwards.speeds[20:]) <= {-1.2, -1.0, -0.8}


def test_confidence_is_the_margin_over_the_best_distant_end(route) -> None:
    database, frames, truth = route
    matches = match_sequences(frames, database, 20, candidates=None, top_n=len(database), exclusion=3)
    for t in (30, 150):
        distant = np.abs(matches.positions[t] - matches.positions[t, 0]) > 3
        runner_up = matches.scores[t][distant].max()
        assert matches.confidence[t] == pytest.approx(matches.scores[t, 0] - runner_up, abs=1e-6)
    right = np.abs(matches.positions[:, 0] - truth) <= 1
    assert matches.confidence[right].mean() > 2 * matches.confidence[~right].mean()


def test_route_contrast_subtracts_the_mean_of_the_earlier_frames_in_its_window() -> None:
    rng = np.random.default_rng(4)
    frames = rng.normal(size=(7, 5))
    contrast = RouteContrast(5, window=3)
    out = [contrast.push(frame) for frame in frames]
    np.testing.assert_allclose(out[0], frames[0], rtol=1e-6)
    np.testing.assert_allclose(out[2], frames[2] - frames[:2].mean(0), rtol=1e-5)
    np.testing.assert_allclose(out[6], frames[6] - frames[3:6].mean(0), rtol=1e-5, atol=1e-6)
    contrast.reset()
    np.testing.assert_allclose(contrast.push(frames[5]), frames[5], rtol=1e-6)
    switched_off = RouteContrast(5, window=0)
    assert all(np.allclose(switched_off.push(frame), frame) for frame in frames)


def test_candidates_of_a_frame_are_the_same_searched_alone_or_in_a_batch(route) -> None:
    database, frames, _ = route
    rows = MapRows(database)
    contrasted = frames[:40] - frames[:40].mean(0)
    batch = rows.candidates(contrasted, 7)
    alone = [rows.candidates(frame[None], 7)[0] for frame in contrasted]
    for (places, scores), (single_places, single_scores), frame in zip(batch, alone, contrasted, strict=True):
        np.testing.assert_array_equal(places, single_places)
        np.testing.assert_array_equal(scores, single_scores)
        assert np.all(np.diff(places) > 0)
        np.testing.assert_array_equal(np.sort(places), np.sort(np.argsort(-(database @ frame))[:7]))
    assert [len(c[0]) for c in rows.candidates(np.zeros((2, database.shape[1]), np.float32), 7)] == [0, 0]


def test_bad_input_raises_one_clear_error(route) -> None:
    database, frames, _ = route
    with pytest.raises(ValueError, match="sequence length must be >= 1"):
        match_sequences(frames, database, 0)
    with pytest.raises(ValueError, match=r"query descriptors must be \[Q, 48\]"):
        match_sequences(frames[:, :10], database, 5)
    with pytest.raises(ValueError, match="L2-normalised"):
        match_sequences(frames, database * 2, 5)
    with pytest.raises(ValueError, match="candidates must be >= 1"):
        match_sequences(frames, database, 5, candidates=0)
    with pytest.raises(ValueError, match="descriptor has dimension 3"):
        OnlineSequenceMatcher(database).push(np.ones(3))
