"""Stage 4: preference pairs and best-of-N SFT records, in-language and cross-language.

In-language: per partition, one pool per prompt. Cross-language: one pool per conceptual prompt over
all languages of a group (chosen and rejected may differ in language), its own unpartitioned assets.
Asset checks guard the pairs; the blocking ones keep corrupt pairs away from training.
"""

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    MetadataValue,
    Output,
    multi_asset,
)

from croco_pipeline.constants import CROCO_GROUP, CROSS_LANGUAGE_GROUP
from croco_pipeline.core.io.markdown import markdown_table
from croco_pipeline.core.pairs.checks import check_pairs
from croco_pipeline.core.pairs.rule import NonFiniteRewardError, PairingConfig, pairs_and_best_of_n
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.settings import PipelineSettings

_IN_LANGUAGE_CHECKS = [
    ("chosen_beats_rejected", True),
    ("chosen_differs_from_rejected", True),
    ("finite_scores", True),
    ("one_pair_per_prompt", True),
    ("chosen_in_target_language", False),
]
_CROSS_LANGUAGE_CHECKS = [
    ("chosen_beats_rejected", True),
    ("chosen_differs_from_rejected", True),
    ("finite_scores", True),
]


def _check_specs(asset: str, checks: list[tuple[str, bool]]) -> list[AssetCheckSpec]:
    return [AssetCheckSpec(name, asset=asset, blocking=blocking) for name, blocking in checks]


def _pairs_and_best_of_n(scored: pl.DataFrame, config: PairingConfig):
    try:
        return pairs_and_best_of_n(scored, config)
    except NonFiniteRewardError as error:
        # the core message names `non_finite` (its own argument); say what the setting is called here
        raise NonFiniteRewardError(
            f"{error} In the pipeline the setting is non_finite_rewards: set "
            "resources.settings.config.non_finite_rewards to 'drop' to leave such rows out and count them."
        ) from None


def _pair_metadata(pairs: pl.DataFrame, result) -> dict:
    margins = pairs["chosen_score"] - pairs["rejected_score"]
    return {
        "pairs": pairs.height,
        "unpaired_by_reason": MetadataValue.json(result.reason_counts()),
        "dropped_non_finite": result.dropped_non_finite,
        # pairs whose chosen or rejected answer is empty (a policy that stops at once): kept, and counted here
        "pairs_with_empty_answer": int(
            ((pairs["chosen"].str.strip_chars() == "") | (pairs["rejected"].str.strip_chars() == "")).sum()
        ),
        "mean_margin": MetadataValue.float(float(margins.mean()) if pairs.height else float("nan")),
        "example_pairs": MetadataValue.md(
            markdown_table(
                pairs.select("prompt_id", "prompt_language", "chosen", "chosen_score", "rejected", "rejected_score"), 3
            )
        ),
    }


def _check_results(asset: str, outcomes) -> list[AssetCheckResult]:
    return [
        AssetCheckResult(
            asset_key=AssetKey(asset),
            check_name=outcome.name,
            passed=outcome.passed,
            severity=AssetCheckSeverity.ERROR if outcome.blocking else AssetCheckSeverity.WARN,
            description=outcome.description,
            metadata=outcome.metadata,
        )
        for outcome in outcomes
    ]


def in_language_pairs(prefix: str = "", group: str = CROCO_GROUP):
    """The in-language pairs asset; ``prefix`` names a later round's (``round1_``: ``round1_preference_pairs``
    from ``round1_reward_scores``)."""
    pairs_name = f"{prefix}preference_pairs"

    @multi_asset(
        name=pairs_name,
        partitions_def=language_partitions,
        group_name=group,
        ins={"reward_scores": AssetIn(f"{prefix}reward_scores")},
        outs={
            pairs_name: AssetOut(
                code_version="2",
                kinds={"parquet"},
                description="One pair per prompt: best sample vs the one nearest the target.",
            ),
            f"{prefix}unpaired_prompts": AssetOut(
                code_version="2", kinds={"parquet"}, description="Prompts without a pair, and why."
            ),
            f"{prefix}sft_records": AssetOut(
                code_version="2", kinds={"parquet"}, description="Best-of-N sample per prompt (SFT baseline data)."
            ),
        },
        check_specs=_check_specs(pairs_name, _IN_LANGUAGE_CHECKS),
    )
    def _pairs(context: AssetExecutionContext, reward_scores: pl.DataFrame, settings: PipelineSettings):
        """In-language pairs: chosen = highest reward, rejected = nearest the target, strictly below."""
        language = context.partition_key
        config = PairingConfig(
            scope="in-language",
            target=settings.pair_target,
            languages=(language,),
            non_finite=settings.non_finite_rewards,
        )
        result, sft = _pairs_and_best_of_n(reward_scores, config)
        metadata = {**_pair_metadata(result.pairs, result), "pair_target": settings.pair_target}
        yield Output(result.pairs, output_name=pairs_name, metadata=metadata)
        yield Output(result.unpaired, output_name=f"{prefix}unpaired_prompts")
        yield Output(sft, output_name=f"{prefix}sft_records")
        outcomes = check_pairs(
            result.pairs,
            in_language=True,
            language=language,
            min_chosen_language_share=settings.min_chosen_language_share,
        )
        yield from _check_results(pairs_name, outcomes)

    return _pairs


preference_pairs = in_language_pairs()


def cross_language_pairs_asset(
    prefix: str = "", scores_asset: str = "reward_scores", group: str = CROSS_LANGUAGE_GROUP
):
    """The cross-language pairs asset over every language's ``scores_asset``; ``prefix`` names a later
    round's (``round1_``: ``round1_cross_language_pairs`` from ``round1_multilingual_reward_scores``)."""
    pairs_name = f"{prefix}cross_language_pairs"

    @multi_asset(
        name=pairs_name,
        group_name=group,
        ins={"reward_scores": AssetIn(scores_asset, metadata={"allow_missing_partitions": True})},
        outs={
            pairs_name: AssetOut(
                code_version="3",
                kinds={"parquet"},
                description="One pair per conceptual prompt, pooled over a language group.",
            ),
            f"{prefix}cross_language_unpaired": AssetOut(code_version="3", kinds={"parquet"}),
            f"{prefix}cross_language_sft_records": AssetOut(code_version="3", kinds={"parquet"}),
        },
        check_specs=_check_specs(pairs_name, _CROSS_LANGUAGE_CHECKS),
    )
    def _pairs(context: AssetExecutionContext, reward_scores: dict[str, pl.DataFrame], settings: PipelineSettings):
        """Cross-language pairs over every materialised language (or the configured group, in its order)."""
        languages = tuple(settings.cross_language_languages or sorted(reward_scores))
        missing = [code for code in languages if code not in reward_scores]
        if missing:
            raise ValueError(
                f"cross_language_languages names {', '.join(missing)} but {scores_asset} has no such partition; "
                "materialise them first or change settings.cross_language_languages."
            )
        scored = pl.concat([reward_scores[code] for code in languages], how="diagonal_relaxed")
        config = PairingConfig(
            scope="cross-language",
            target=settings.pair_target,
            languages=languages,
            prompt_source=settings.prompt_source,
            seed=settings.seed,
            non_finite=settings.non_finite_rewards,
        )
        result, sft = _pairs_and_best_of_n(scored, config)
        metadata = _pair_metadata(result.pairs, result)
        metadata["languages"] = ", ".join(languages)
        metadata["pair_target"] = settings.pair_target
        metadata["prompt_source"] = settings.prompt_source  # which answer's language the prompt is shown in
        metadata["chosen_and_rejected_differ_in_language"] = MetadataValue.float(
            float((result.pairs["chosen_language"] != result.pairs["rejected_language"]).mean())
            if result.pairs.height
            else 0.0
        )
        yield Output(result.pairs, output_name=pairs_name, metadata=metadata)
        yield Output(result.unpaired, output_name=f"{prefix}cross_language_unpaired")
        yield Output(sft, output_name=f"{prefix}cross_language_sft_records")
        yield from _check_results(pairs_name, check_pairs(result.pairs, in_language=False))

    return _pairs


cross_language_pairs = cross_language_pairs_asset()
