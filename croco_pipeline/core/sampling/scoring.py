"""Scoring the samples table: one reward per sample from a reward scorer, and summary statistics."""

from __future__ import annotations

import polars as pl

from croco_pipeline.core.prompts.sets import format_user_prompt


def add_rewards(samples: pl.DataFrame, scorer, *, respond_in_language: bool = False) -> pl.DataFrame:
    """Score every sample with ``scorer`` (a core.models.reward_scorers.RewardScorer) and add the reward columns.

    The reward model sees the user turn the policy saw: with ``respond_in_language`` (set it as the
    samples were generated) the prompt carries the "Please respond in {Language}" suffix.
    Conversations over the scorer's length limit are flagged (``reward_truncated`` / ``reward_skipped``,
    skipped ones get a NaN reward), never dropped silently.
    """
    if samples.is_empty():
        return samples.with_columns(
            pl.lit(None, pl.Float64).alias("reward"),
            pl.lit(None, pl.String).alias("reward_model"),
            pl.lit(None, pl.Boolean).alias("reward_truncated"),
            pl.lit(None, pl.Boolean).alias("reward_skipped"),
        )
    batch = scorer.score(
        [
            format_user_prompt(prompt, language, respond_in_language)
            for prompt, language in zip(samples["prompt"], samples["language"])
        ],
        samples["response"].to_list(),
        samples["language"].to_list(),
        samples["finish_reason"].to_list(),
    )
    return samples.with_columns(
        pl.Series("reward", batch.scores, dtype=pl.Float64),
        pl.lit(scorer.name).alias("reward_model"),
        pl.Series("reward_truncated", batch.truncated, dtype=pl.Boolean),
        pl.Series("reward_skipped", batch.skipped, dtype=pl.Boolean),
    )


def reward_summary(scored: pl.DataFrame) -> dict[str, float | int]:
    """Mean, std, min, max of the rewards and how many were truncated, skipped or non-finite, and how many
    scored answers were empty (scored like any other answer, and counted)."""
    finite = scored.filter(pl.col("reward").is_finite())
    return {
        "samples": scored.height,
        "mean": float(finite["reward"].mean()) if finite.height else float("nan"),
        "std": float(finite["reward"].std(ddof=0)) if finite.height else float("nan"),
        "min": float(finite["reward"].min()) if finite.height else float("nan"),
        "max": float(finite["reward"].max()) if finite.height else float("nan"),
        "truncated": int(scored["reward_truncated"].sum() or 0),
        "skipped": int(scored["reward_skipped"].sum() or 0),
        "non_finite": scored.height - finite.height,
        "empty_responses": int((scored["response"].str.strip_chars() == "").sum()) if scored.height else 0,
    }
