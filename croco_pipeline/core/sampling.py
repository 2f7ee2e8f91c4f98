"""Self-generation: put a language's prompts to a generator and collect one row per sample.

Used for the training samples (``generations``) and for the evaluation answers of the base and
tuned models, so both are made the same way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import polars as pl

from croco_pipeline.core.generation import Generator, SamplingConfig
from croco_pipeline.core.prompts import format_user_prompt

GENERATION_COLUMNS = [
    "prompt_id", "language", "sample_idx", "prompt", "response", "num_tokens", "finish_reason", "model", "config_hash",
]


def config_hash(**parts) -> str:
    """A short fingerprint of everything that shapes a sample (model, sampling, prompt format)."""
    canonical = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def select_prompts(prompts: pl.DataFrame, split: str, limit: int | None) -> pl.DataFrame:
    """The prompts of one split, in prompt_id order, at most ``limit`` of them (None: all)."""
    chosen = prompts.filter(pl.col("split") == split).sort("prompt_id")
    return chosen if limit is None else chosen.head(limit)


def sample_answers(
    generator: Generator,
    prompts: pl.DataFrame,
    language: str,
    sampling: SamplingConfig,
    *,
    respond_in_language: bool,
    model_label: str,
    adapter_path: str | None = None,
) -> pl.DataFrame:
    """``sampling.n`` answers to every prompt in ``prompts`` (columns prompt_id, prompt), one row each."""
    user_turns = [format_user_prompt(text, language, respond_in_language) for text in prompts["prompt"]]
    completions = generator.generate(user_turns, sampling, adapter_path=adapter_path)
    fingerprint = config_hash(
        model=model_label, adapter=adapter_path, sampling=asdict(sampling), respond_in_language=respond_in_language
    )
    rows = [
        {
            "prompt_id": prompt_id,
            "language": language,
            "sample_idx": sample_idx,
            "prompt": prompt,
            "response": completion.text,
            "num_tokens": completion.num_tokens,
            "finish_reason": completion.finish_reason,
            "model": model_label,
            "config_hash": fingerprint,
        }
        for prompt_id, prompt, samples in zip(prompts["prompt_id"], prompts["prompt"], completions, strict=True)
        for sample_idx, completion in enumerate(samples)
    ]
    schema = {
        "prompt_id": pl.String, "language": pl.String, "sample_idx": pl.Int32, "prompt": pl.String,
        "response": pl.String, "num_tokens": pl.Int32, "finish_reason": pl.String, "model": pl.String,
        "config_hash": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


def add_rewards(samples: pl.DataFrame, scorer) -> pl.DataFrame:
    """Score every sample with ``scorer`` (a core.rewards.RewardScorer) and add the reward columns.

    Conversations over the scorer's length limit are flagged (``reward_truncated`` / ``reward_skipped``,
    skipped ones get a NaN reward), never dropped silently.
    """
    if samples.is_empty():
        return samples.with_columns(
            pl.lit(None, pl.Float64).alias("reward"), pl.lit(None, pl.String).alias("reward_model"),
            pl.lit(None, pl.Boolean).alias("reward_truncated"), pl.lit(None, pl.Boolean).alias("reward_skipped"),
        )
    batch = scorer.score(
        samples["prompt"].to_list(),
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
    """Mean, std, min, max of the rewards and how many were truncated, skipped or non-finite."""
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
    }
