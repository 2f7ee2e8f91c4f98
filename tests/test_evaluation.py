"""Evaluation of a system against the base model, judged by reward: counts, ties, unjudged pairs."""

import math

import polars as pl
import pytest

from croco_pipeline.core.evaluation.systems import JUDGMENT_COLUMNS, answer_pairs, judge_by_reward, summarize_system


def _answers(rewards, texts):
    return pl.DataFrame(
        {
            "prompt_id": ["p1", "p1", "p2", "p2"],
            "language": ["da"] * 4,
            "sample_idx": [0, 1, 0, 1],
            "prompt": ["Hvad er klokken?"] * 2 + ["Skriv et digt."] * 2,
            "response": texts,
            "reward": rewards,
        }
    )


def test_reward_judge_wins_losses_ties_and_unjudged():
    base = _answers([0.5, 0.5, 0.2, 0.1], ["Klokken er tre.", "Den er tre.", "Et digt.", "Digt"])
    tuned = _answers(
        [0.9, 0.5, math.nan, 0.0],
        ["Klokken er præcis tre om eftermiddagen.", "Den er tre.", "", "The poem is short."],
    )
    judgments = judge_by_reward(answer_pairs(base, tuned)).select(JUDGMENT_COLUMNS)
    assert judgments["key"].to_list() == ["p1:0", "p1:1", "p2:0", "p2:1"]
    assert judgments["verdict"].to_list() == ["1", "T", None, "2"]
    assert judgments["preference"].to_list() == [1.0, 0.5, None, 0.0]
    assert judgments["judge"].unique().to_list() == ["reward"]

    row = summarize_system("da", "croco_monolingual", judgments, mc={"n": 48, "accuracy": 0.5, "ci_low": 0.36, "ci_high": 0.64})
    assert (row["n_judged"], row["n_unjudged"], row["wins"], row["losses"], row["ties"]) == (3, 1, 1, 1, 1)
    assert row["win_rate"] == pytest.approx(50.0)  # (1 + 0.5 + 0) / 3
    assert row["standard_error"] == pytest.approx(50.0 / math.sqrt(3))  # sample std 0.5, n 3
    assert row["tuned_mean_length"] == pytest.approx(sum(map(len, tuned["response"])) / 4)
    assert (row["mc_n"], row["mc_accuracy"]) == (48, 0.5)


def test_answer_pairs_need_the_same_samples():
    base = _answers([0.1, 0.2, 0.3, 0.4], ["a", "b", "c", "d"])
    tuned = pl.concat([_answers([0.1, 0.2, 0.3, 0.4], ["a", "b", "c", "d"]), _answers([0.0] * 4, ["x"] * 4)])
    with pytest.raises(pl.exceptions.ComputeError):
        answer_pairs(base, tuned)  # duplicated samples are a bug upstream, never silently doubled
