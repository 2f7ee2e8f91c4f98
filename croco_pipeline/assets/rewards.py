"""Stage 3: one reward score per generation."""

import polars as pl
from dagster import AssetExecutionContext, MetadataValue, asset

from croco_pipeline.core.sampling import add_rewards, reward_summary
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.models import RewardResource


@asset(partitions_def=language_partitions, group_name="croco", code_version="1", kinds={"pytorch", "parquet"})
def reward_scores(context: AssetExecutionContext, generations: pl.DataFrame, reward: RewardResource) -> pl.DataFrame:
    """The generations with ``reward`` (raw score), ``reward_model`` and truncation/skip flags."""
    with reward.open() as scorer:
        scored = add_rewards(generations, scorer)
    summary = reward_summary(scored)
    if summary["truncated"] or summary["skipped"]:
        context.log.warning(
            f"{summary['truncated']} conversations were truncated and {summary['skipped']} skipped "
            f"because they exceed the reward model's max_length ({reward.max_length})."
        )
    context.add_output_metadata(
        {
            "reward_model": scorer.name,
            **{f"reward_{key}": MetadataValue.float(value) for key, value in summary.items() if isinstance(value, float)},
            **{key: value for key, value in summary.items() if isinstance(value, int)},
        }
    )
    return scored
