"""Stage 4: in-language preference pairs (best sample vs the one nearest mean − 2·std)."""

import polars as pl
from dagster import AssetExecutionContext, MetadataValue, asset

from croco_pipeline.core.pairing import PairingConfig, build_pairs
from croco_pipeline.core.tables import markdown_table
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.settings import PipelineSettings


@asset(partitions_def=language_partitions, group_name="croco", code_version="1", kinds={"polars", "parquet"})
def preference_pairs(
    context: AssetExecutionContext, reward_scores: pl.DataFrame, settings: PipelineSettings
) -> pl.DataFrame:
    """One pair per prompt: chosen = highest reward, rejected = nearest the target and strictly below."""
    language = context.partition_key
    result = build_pairs(
        reward_scores, PairingConfig(scope="in-language", target=settings.pair_target, languages=(language,))
    )
    pairs = result.pairs
    margins = pairs["chosen_score"] - pairs["rejected_score"]
    context.add_output_metadata(
        {
            "pairs": pairs.height,
            "unpaired_by_reason": MetadataValue.json(result.reason_counts()),
            "dropped_non_finite": result.dropped_non_finite,
            "mean_margin": MetadataValue.float(float(margins.mean()) if pairs.height else float("nan")),
            "example_pairs": MetadataValue.md(
                markdown_table(pairs.select("prompt_id", "chosen", "chosen_score", "rejected", "rejected_score"), 3)
            ),
        }
    )
    return pairs
