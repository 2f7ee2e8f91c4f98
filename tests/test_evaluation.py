"""Evaluation of a system against the base model, judged by reward: counts, ties, unjudged pairs."""

import math

import polars as pl
import pytest

from croco_pipeline.core.evaluation.versus_base import (
    JUDGMENT_COLUMNS,
    answer_pairs,
    judge_by_reward,
    summarize_system,
)


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

    row = summarize_system(
        "da", "croco_monolingual", judgments, mc={"n": 48, "accuracy": 0.5, "ci_low": 0.36, "ci_high": 0.64}
    )
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


def test_subcategories_of_the_base_answers_give_win_rates_per_subcategory():
    from croco_pipeline.core.evaluation.versus_base import subcategory_win_rates

    base = _answers([0.5, 0.5, 0.2, 0.1], ["a", "b", "c", "d"]).with_columns(
        subcategory=pl.Series(["math", "math", "coding", "coding"])
    )
    tuned = _answers([0.9, 0.1, 0.3, math.nan], ["a+", "b-", "c+", "d?"])
    judgments = judge_by_reward(answer_pairs(base, tuned)).select(JUDGMENT_COLUMNS)
    assert judgments["subcategory"].to_list() == ["math", "math", "coding", "coding"]
    table = subcategory_win_rates(judgments)
    assert table.select("subcategory", "n_judged", "unparseable", "win_rate").rows() == [
        ("coding", 1, 1, 100.0),
        ("math", 2, 0, 50.0),
    ]
    # prompts without subcategories (the shipped held-out set): a null column and an empty table
    plain = judge_by_reward(answer_pairs(_answers([0.1] * 4, ["a"] * 4), tuned)).select(JUDGMENT_COLUMNS)
    assert plain["subcategory"].null_count() == 4 and subcategory_win_rates(plain).is_empty()


def test_arena_prompts_keep_their_subcategory_through_load_heldout_prompts():
    from croco_pipeline.core.evaluation.heldout import arena_sample_path, load_heldout_prompts

    heldout = load_heldout_prompts("da", str(arena_sample_path("da")))
    assert heldout.prompts["subcategory"].to_list() == ["coding", "math", "creative_writing"]
    assert "subcategory" not in load_heldout_prompts("da", "shipped").prompts.columns
