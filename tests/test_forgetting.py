"""The forgetting measure: a paired change in the probability put on the correct choice, with its interval."""

from __future__ import annotations

import math
import random

import polars as pl
import pytest

from croco_pipeline.core.evaluation.forgetting import correct_choice_probability, forgot, paired_change


def scored(scores: list[list[float]], answers: list[int]) -> pl.DataFrame:
    return pl.DataFrame(
        {"question_id": [f"q{i}" for i in range(len(scores))], "score": scores, "answer": answers},
        schema={"question_id": pl.String, "score": pl.List(pl.Float64), "answer": pl.Int64},
    )


def test_the_probability_of_the_correct_choice_is_a_softmax_over_the_choices() -> None:
    frame = scored([[0.0, 0.0, 0.0, 0.0], [math.log(3), 0.0, 0.0, 0.0]], [2, 0])
    assert correct_choice_probability(frame) == pytest.approx({"q0": 0.25, "q1": 0.5})


def test_a_five_point_drop_is_seen_on_48_questions_where_accuracy_cannot_see_it() -> None:
    rng = random.Random(0)
    base_scores = [[rng.gauss(0, 1) for _ in range(4)] for _ in range(48)]
    answers = [rng.randrange(4) for _ in range(48)]
    base = scored(base_scores, answers)
    # the tuned model moves about 8 points of probability away from the correct answer, with noise
    tuned_scores = [
        [s - (0.45 + rng.gauss(0, 0.05) if i == a else 0.0) for i, s in enumerate(row)]
        for row, a in zip(base_scores, answers)
    ]
    base_p = correct_choice_probability(base)
    change = paired_change(base_p, correct_choice_probability(scored(tuned_scores, answers)))
    assert change["mc_pairs"] == 48 and change["mc_delta"] < -5
    assert change["mc_delta_high"] - change["mc_delta_low"] < 4  # the interval is narrow: a drop is visible
    assert forgot(change) is True
    # an unchanged model: no change, an interval of zero width, no forgetting
    same = paired_change(base_p, base_p)
    assert same["mc_delta"] == 0 and forgot(same) is False


def test_different_questions_cannot_be_paired() -> None:
    base = correct_choice_probability(scored([[0.0, 1.0, 0.0, 0.0]] * 3, [1, 1, 1]))
    with pytest.raises(ValueError, match="different questions"):
        paired_change(base, {"q0": 0.5})
