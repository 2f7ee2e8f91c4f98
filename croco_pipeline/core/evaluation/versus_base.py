"""A tuned model (a "system") against its base model on held-out prompts (docs/design.md §1.6): the
answer pairs, their judging, and the system's summary row. (The functions that open the models for this,
one per evaluation step, are in :mod:`croco_pipeline.core.evaluation.model_calls`.)

Both models answer the same prompts with the same sampling settings. A judge compares each
(tuned, base) answer pair: the reward scorer (tuned wins when its reward is higher, equal rewards
tie) or an LLM judge (``core.evaluation.judge``). Each system gets one summary row per language: win rate with
standard error and the length-controlled win rate, mean rewards, the share of answers in the target
language, and its multiple-choice accuracy (catastrophic forgetting).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from croco_pipeline.core.evaluation.forgetting import paired_change
from croco_pipeline.core.evaluation.judge import JUDGMENT_SCHEMA, PairsToJudge, judge_pairs, judgments_from_scores
from croco_pipeline.core.evaluation.win_rates import (
    ALL_GROUP,
    AVERAGE_GROUP,
    judgment_report,
    outcome_stats,
    verdict_outcomes,
)
from croco_pipeline.core.languages.identify import detect, detect_independent
from croco_pipeline.core.models.generators import Generator
from croco_pipeline.core.sampling.config import SamplingConfig
from croco_pipeline.core.sampling.samples import sample_answers
from croco_pipeline.core.sampling.scoring import add_rewards

_KEYS = ["prompt_id", "language", "sample_idx"]


def answer_pairs(base: pl.DataFrame, tuned: pl.DataFrame) -> pl.DataFrame:
    """One row per (prompt_id, sample_idx): the tuned and the base answer and their rewards, and the
    prompt's ``subcategory`` where the base answers carry one (m-ArenaHard), else null."""
    subcategory = pl.col("subcategory") if "subcategory" in base.columns else pl.lit(None, pl.String)
    return (
        tuned.select(
            *_KEYS, "prompt", pl.col("response").alias("tuned_response"), pl.col("reward").alias("tuned_reward")
        )
        .join(
            base.select(
                *_KEYS,
                subcategory.alias("subcategory"),
                pl.col("response").alias("base_response"),
                pl.col("reward").alias("base_reward"),
            ),
            on=_KEYS,
            how="inner",
            validate="1:1",
        )
        .sort(_KEYS)
        .with_columns(
            pl.format("{}:{}", "prompt_id", "sample_idx").alias("key"),
            pl.col("tuned_response").str.len_chars().cast(pl.Int64).alias("model_length"),
            pl.col("base_response").str.len_chars().cast(pl.Int64).alias("reference_length"),
        )
    )


@dataclass(frozen=True)
class Judging:
    """How an LLM judge runs (``core.evaluation.judge.judge_pairs``) and what a tie counts in the win
    rate ("win", "half" or "loss"); the pipeline's values come from its settings."""

    seed: int
    max_new_tokens: int
    temperature: float
    prompt_style: str
    tie_handling: str


def _to_judge(pairs: pl.DataFrame) -> PairsToJudge:
    return PairsToJudge(
        questions=pairs["prompt"].to_list(),
        model_answers=pairs["tuned_response"].to_list(),
        reference_answers=pairs["base_response"].to_list(),
        languages=pairs["language"].to_list(),
        keys=pairs["key"].to_list(),
    )


def judge_by_reward(pairs: pl.DataFrame, scorer_name: str = "reward") -> pl.DataFrame:
    """The reward scorer as judge: tuned wins when its reward is higher, equal rewards tie (0.5).

    Pairs whose rewards are not both finite (e.g. skipped as too long) get no verdict, like an
    unparseable LLM verdict, and are counted rather than dropped.
    """
    verdicts = judgments_from_scores(_to_judge(pairs), pairs["tuned_reward"].to_list(), pairs["base_reward"].to_list())
    return _with_verdicts(pairs, verdicts, judge=f"reward: {scorer_name}" if scorer_name != "reward" else "reward")


def judge_by_llm(pairs: pl.DataFrame, judge: Generator, judging: Judging) -> pl.DataFrame:
    """An LLM judge compares each pair, shown in a seeded random order (``core.evaluation.judge``)."""
    verdicts = judge_pairs(
        judge,
        _to_judge(pairs),
        seed=judging.seed,
        max_new_tokens=judging.max_new_tokens,
        temperature=judging.temperature,
        prompt_style=judging.prompt_style,
    )
    return _with_verdicts(pairs, verdicts, judge=judge.model)


def _with_verdicts(pairs: pl.DataFrame, verdicts: pl.DataFrame, judge: str) -> pl.DataFrame:
    judged = verdicts.select("key", "swapped", "verdict", "preference", "judge_text")
    return pairs.join(judged, on="key", how="left", validate="1:1").with_columns(pl.lit(judge).alias("judge"))


JUDGMENT_COLUMNS = [
    *_KEYS,
    "key",
    "subcategory",
    "prompt",
    "tuned_response",
    "base_response",
    "tuned_reward",
    "base_reward",
    *[column for column in JUDGMENT_SCHEMA if column not in ("key", "language")],
    "judge",
]


def target_language_share(responses: list[str], language: str, *, independent: bool = False) -> float:
    """Share of answers a language identifier assigns to ``language``: fastText (the one inside the demo's
    reward scorer), or with ``independent`` py3langid, which shares neither model nor method with it."""
    if not responses:
        return float("nan")
    identify = detect_independent if independent else detect
    return sum(identify(text)[0] == language for text in responses) / len(responses)


def identifier_agreement(responses: list[str], language: str) -> float:
    """Share of answers on which the two identifiers agree whether the answer is in ``language``."""
    if not responses:
        return float("nan")
    agree = [(detect(text)[0] == language) == (detect_independent(text)[0] == language) for text in responses]
    return sum(agree) / len(agree)


def summarize_system(
    language: str,
    system: str,
    judgments: pl.DataFrame,
    mc: dict | None,
    tie_handling: str = "half",
    base_mc_p_correct: dict[str, float] | None = None,
) -> dict:
    """The evaluation row of one system in one language (the statistics of ``croco winrate``). Judgments
    without a verdict are counted in ``n_unjudged``; when none has one, the rates are null, not an error:
    the judgments are kept for a look at what the judge wrote. ``judge`` names who judged; the target-language
    shares are measured by both identifiers; with the base's ``base_mc_p_correct``, the forgetting measure
    (``core.evaluation.forgetting``) pairs the two models on the same questions."""
    tuned_responses = judgments["tuned_response"].to_list()
    base_responses = judgments["base_response"].to_list()
    change = {"mc_delta": None, "mc_delta_low": None, "mc_delta_high": None}
    if mc and mc.get("p_correct") and base_mc_p_correct:
        change = paired_change(base_mc_p_correct, mc["p_correct"])
        change.pop("mc_pairs")
    stats = outcome_stats(
        verdict_outcomes(judgments["verdict"], judgments["swapped"]),
        judgments["model_length"].to_list(),
        judgments["reference_length"].to_list(),
        tie_handling,
    )
    return {
        "language": language,
        "system": system,
        "n_judged": stats["n_judged"],
        "n_unjudged": stats["unparseable"],
        "wins": stats["wins"],
        "losses": stats["losses"],
        "ties": stats["ties"],
        "win_rate": stats["win_rate"],
        "standard_error": stats["standard_error"],
        "lc_win_rate": stats["lc_win_rate"],
        "phi": stats["phi"],
        "tuned_mean_reward": float(judgments["tuned_reward"].mean()),
        "base_mean_reward": float(judgments["base_reward"].mean()),
        "judge": judgments["judge"][0] if judgments.height else None,
        "tuned_language_share": target_language_share(tuned_responses, language),
        "base_language_share": target_language_share(base_responses, language),
        "tuned_language_share_independent": target_language_share(tuned_responses, language, independent=True),
        "base_language_share_independent": target_language_share(base_responses, language, independent=True),
        "identifier_agreement": identifier_agreement(tuned_responses + base_responses, language),
        "tuned_mean_length": float(judgments["model_length"].mean()),
        "base_mean_length": float(judgments["reference_length"].mean()),
        **mc_columns(mc),
        **change,
    }


SUBCATEGORY_SCHEMA = {
    "subcategory": pl.String,
    "n_judged": pl.Int64,
    "unparseable": pl.Int64,
    "wins": pl.Int64,
    "losses": pl.Int64,
    "ties": pl.Int64,
    "win_rate": pl.Float64,
    "standard_error": pl.Float64,
    "lc_win_rate": pl.Float64,
}


def subcategory_win_rates(judgments: pl.DataFrame, tie_handling: str = "half") -> pl.DataFrame:
    """One row per subcategory of the judged prompts (m-ArenaHard), as the paper reports them; empty when
    no judgment has a subcategory."""
    labelled = judgments.filter(pl.col("subcategory").is_not_null())
    if labelled.is_empty():
        return pl.DataFrame(schema=SUBCATEGORY_SCHEMA)
    outcomes = verdict_outcomes(labelled["verdict"], labelled["swapped"])
    records = judgment_report(
        labelled.with_columns(pl.Series("outcome", outcomes, dtype=pl.String)),
        "subcategory",
        subcategory_col=None,
        tie_handling=tie_handling,
    )
    rows = [r for r in records if r["subcategory"] not in (ALL_GROUP, AVERAGE_GROUP)]
    return pl.DataFrame(rows).select(list(SUBCATEGORY_SCHEMA)).cast(SUBCATEGORY_SCHEMA)


def mc_columns(mc: dict | None) -> dict:
    """Multiple-choice columns (null when the structured evaluation did not run): accuracy with its interval,
    and ``mc_p_correct``, the probability on each question's correct choice as JSON (for pairing)."""
    mc = mc or {}
    return {
        "mc_n": mc.get("n"),
        "mc_accuracy": mc.get("accuracy"),
        "mc_ci_low": mc.get("ci_low"),
        "mc_ci_high": mc.get("ci_high"),
        "mc_p_correct": json.dumps(mc["p_correct"], sort_keys=True) if mc.get("p_correct") else None,
    }


SERVING_SCHEMA = {
    "adapter_serving": pl.String,
    "adapter_dtype": pl.String,
    "adapter_kept_fraction": pl.Float64,
    "adapter_changed_share": pl.Float64,
    "adapter_kept_measured_in": pl.String,
}


def serving_columns(adapter_serving) -> dict:
    """How the tuned model was served (``core.models.lifetime.AdapterServing``): ``lora``, ``merged`` or
    ``merged_float32``, its dtype, and the share of the adapter's change the merged weights keep
    (null under LoRA, and all null for a generator that does not say)."""
    if adapter_serving is None:
        return dict.fromkeys(SERVING_SCHEMA)
    return adapter_serving.as_dict()


@dataclass
class SystemEvaluation:
    summary: pl.DataFrame  # one row: the system's win rate over base, SE, LC-WR, rewards, language share, MC
    judgments: pl.DataFrame  # one row per judged (tuned, base) answer pair
    subcategories: pl.DataFrame  # win rates per subcategory of the prompts (empty without subcategories)


def evaluate_system(
    *,
    language: str,
    system: str,
    base_answers: pl.DataFrame,
    adapter_path: str,
    open_policy: Callable[[], Generator],
    open_scorer: Callable[[], object],
    open_judge: Callable[[], Generator] | None,
    sampling: SamplingConfig,
    respond_in_language: bool,
    model_label: str,
    judging: Judging,
    multiple_choice: Callable[[], dict | None],
    base_mc_p_correct: dict[str, float] | None = None,
) -> SystemEvaluation:
    """One system against the base model in one language.

    The tuned model (base + ``adapter_path``) answers the prompts of ``base_answers`` with the same
    sampling settings; the reward scorer scores its answers; each (tuned, base) pair is judged by the
    LLM judge (``open_judge``) or, without one, by the rewards; ``multiple_choice()`` gives the
    system's multiple-choice summary (or None). Models are opened one at a time and closed after use.
    The summary row also says how the adapter was served (:func:`serving_columns`).
    """
    prompts = base_answers.select("prompt_id", "prompt").unique(maintain_order=True)
    with open_policy() as generator:
        serving = serving_columns(generator.adapter_serving)
        tuned = sample_answers(
            generator,
            prompts,
            language,
            sampling,
            respond_in_language=respond_in_language,
            model_label=f"{model_label}+{system}",
            adapter_path=adapter_path,
        )
    with open_scorer() as scorer:
        tuned = add_rewards(tuned, scorer, respond_in_language=respond_in_language)
        scorer_name = scorer.name
    pairs = answer_pairs(base_answers, tuned)
    if open_judge is not None:
        with open_judge() as judge:
            judgments = judge_by_llm(pairs, judge, judging)
    else:  # the reward scorer judges: the one that chose the training pairs, which the table must say
        judgments = judge_by_reward(pairs, scorer_name)
    judgments = judgments.select(JUDGMENT_COLUMNS).with_columns(pl.lit(system).alias("system"))
    row = summarize_system(language, system, judgments, multiple_choice(), judging.tie_handling, base_mc_p_correct)
    summary = pl.DataFrame([{**row, **serving}], schema_overrides=SERVING_SCHEMA)
    return SystemEvaluation(
        summary=summary, judgments=judgments, subcategories=subcategory_win_rates(judgments, judging.tie_handling)
    )
