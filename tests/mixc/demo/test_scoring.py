"""Scoring functions on hand-built cases with known answers."""

import pytest

from mixc.audio import Turn
from mixc.demo.audio import TrueTurn
from mixc.demo.scoring import (
    boundary_recall,
    der,
    edit_distance,
    normalise,
    speaker_changes,
    speaker_count_correct,
    wer,
)

TRUTH = [TrueTurn("a", 0.0, 10.0, ""), TrueTurn("b", 10.5, 20.0, ""), TrueTurn("a", 20.5, 30.0, "")]


def turns(*spans: tuple[float, float, str]) -> list[Turn]:
    return [Turn(start, end, speaker) for start, end, speaker in spans]


def test_der_identical_and_relabelled_are_zero() -> None:
    assert der(TRUTH, TRUTH) == 0.0
    assert der(TRUTH, turns((0, 10, "x"), (10.5, 20, "y"), (20.5, 30, "x"))) == 0.0


def test_der_wrong_speaker_part_of_the_time() -> None:
    assert der(turns((0, 10, "a"), (10, 20, "b")), turns((0, 20, "x")), collar=0.0) == pytest.approx(0.5)
    truth = turns((0, 10, "a"), (10, 30, "b"))
    assert der(truth, turns((0, 30, "x")), collar=0.0) == pytest.approx(10 / 30)
    # +-0.25 s collars at 0, 10 and 30 leave 29 s scored; "x" maps to "b", so 0.25-9.75 s is confused
    assert der(truth, turns((0, 30, "x"))) == pytest.approx(9.5 / 29)


def test_der_collar_is_per_side() -> None:
    """Boundaries moved by 0.2 s fall inside +-0.25 s collars; moved by 0.3 s they do not."""
    near = turns((0, 10.2, "x"), (10.7, 20.2, "y"), (20.7, 30, "x"))
    far = turns((0, 10.3, "x"), (10.8, 20.3, "y"), (20.8, 30, "x"))
    assert der(TRUTH, near) == 0.0
    assert der(TRUTH, near, collar=0.0) > 0.0
    assert der(TRUTH, far) > 0.0


def test_der_missed_and_false_alarm() -> None:
    truth = turns((0, 10, "a"))
    assert der(truth, []) == 1.0
    assert der(truth, turns((0, 10, "a"), (10, 15, "a")), collar=0.0) == pytest.approx(0.5)
    assert der(truth, turns((5, 10, "a")), collar=0.0, uem=(5.0, 10.0)) == 0.0
    with pytest.raises(ValueError):
        der([], truth)


def test_wer_known_cases() -> None:
    assert wer("the cat sat", "the cat sat") == 0.0
    assert wer("the cat sat", "the cat sat down") == pytest.approx(1 / 3)
    assert wer("the cat sat", "") == 1.0
    assert wer("Hello, World!", "hello   world") == 0.0
    assert wer("don't stop", "dont stop") == 0.0
    assert wer("in 1903", "in nineteen oh three") == pytest.approx(3 / 2)


def test_wer_corpus_level_pools_edits() -> None:
    # one error in six reference words, not the mean of the per-pair rates (0.25)
    assert wer(["a b", "c d e f"], ["a x", "c d e f"]) == pytest.approx(1 / 6)
    with pytest.raises(ValueError):
        wer(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        wer("", "a")


def test_normalise_and_edit_distance() -> None:
    assert normalise("Well-known, it's 17th-century: FINE.") == ["well", "known", "its", "17th", "century", "fine"]
    assert edit_distance(list("kitten"), list("sitting")) == 3
    assert edit_distance([], ["a", "b"]) == 2


def test_speaker_changes_are_gaps_between_different_speakers() -> None:
    spans = turns((0, 1, "a"), (1.5, 2, "a"), (2.4, 3, "b"), (3, 4, "a"), (3.8, 5, "b"))
    assert speaker_changes(spans) == [(2.0, 2.4), (3.0, 3.0), (3.8, 4.0)]
    assert speaker_changes(TRUTH) == [(10.0, 10.5), (20.0, 20.5)]


def test_boundary_recall() -> None:
    assert boundary_recall([1.0, 5.0], [1.2]) == 0.5
    assert boundary_recall([1.0, 1.4], [1.2]) == 0.5  # one prediction matches one boundary
    assert boundary_recall([1.0, 1.4], [1.2, 1.25]) == 1.0
    assert boundary_recall([(2.0, 2.8)], [2.05]) == 1.0  # anywhere in the gap
    assert boundary_recall([(2.0, 2.8)], [3.05]) == 1.0  # or within the tolerance past it
    assert boundary_recall([(2.0, 2.8)], [3.2]) == 0.0
    assert boundary_recall([], [1.0]) == 1.0
    # a wide window first taking 1.0 would leave the narrow one empty; the matching is maximal
    assert boundary_recall([(0.0, 2.0), 1.0], [1.0, 1.5], tolerance=0.0) == 1.0


def test_speaker_count_correct() -> None:
    assert speaker_count_correct(TRUTH, turns((0, 30, "x"), (31, 32, "y")))
    assert not speaker_count_correct(TRUTH, turns((0, 30, "x")))
