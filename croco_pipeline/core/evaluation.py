"""Evaluation of a tuned model against its base on held-out prompts.

Both models answer the same prompts with the same sampling settings; the reward scorer judges each
(tuned, base) answer pair: tuned wins when its reward is higher, ties count 0.5 (DESIGN §2.6).
"""

from __future__ import annotations

import polars as pl

from croco_pipeline.core.langid import detect
from croco_pipeline.core.winrate import win_rate_stats


def reward_judgments(base: pl.DataFrame, tuned: pl.DataFrame) -> pl.DataFrame:
    """One row per (prompt_id, sample_idx): both answers, their rewards and the tuned model's preference.

    Answers whose reward is not finite cannot be compared and get a null preference.
    """
    keys = ["prompt_id", "language", "sample_idx"]
    joined = tuned.select(
        *keys, "prompt", pl.col("response").alias("tuned_response"), pl.col("reward").alias("tuned_reward")
    ).join(
        base.select(*keys, pl.col("response").alias("base_response"), pl.col("reward").alias("base_reward")),
        on=keys,
        how="inner",
        validate="1:1",
    )
    comparable = pl.col("tuned_reward").is_finite() & pl.col("base_reward").is_finite()
    preference = (
        pl.when(~comparable).then(None)
        .when(pl.col("tuned_reward") > pl.col("base_reward")).then(1.0)
        .when(pl.col("tuned_reward") < pl.col("base_reward")).then(0.0)
        .otherwise(0.5)
    )
    return joined.with_columns(
        preference.alias("preference"),
        pl.col("tuned_response").str.len_chars().alias("model_length"),
        pl.col("base_response").str.len_chars().alias("reference_length"),
    ).sort(keys)


def target_language_share(responses: list[str], language: str) -> float:
    """Share of answers that the language detector assigns to ``language``."""
    if not responses:
        return float("nan")
    return sum(detect(text)[0] == language for text in responses) / len(responses)


def summarize_language(language: str, judgments: pl.DataFrame) -> dict:
    """The evaluation row of one language: win rate of tuned over base (with SE and length control),
    mean rewards and target-language shares of both models."""
    judged = judgments.filter(pl.col("preference").is_not_null())
    stats = win_rate_stats(
        judged["preference"].to_list(), judged["model_length"].to_list(), judged["reference_length"].to_list()
    )
    return {
        "language": language,
        "n_judged": stats.n,
        "n_unjudged": judgments.height - judged.height,
        "wins": stats.wins,
        "losses": stats.losses,
        "ties": stats.ties,
        "win_rate": stats.win_rate,
        "standard_error": stats.standard_error,
        "lc_win_rate": stats.lc_win_rate,
        "base_mean_reward": float(judgments["base_reward"].mean()),
        "tuned_mean_reward": float(judgments["tuned_reward"].mean()),
        "base_language_share": target_language_share(judgments["base_response"].to_list(), language),
        "tuned_language_share": target_language_share(judgments["tuned_response"].to_list(), language),
        "base_mean_length": float(judgments["reference_length"].mean()),
        "tuned_mean_length": float(judgments["model_length"].mean()),
    }
