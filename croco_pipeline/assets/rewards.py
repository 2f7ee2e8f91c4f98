"""Stage 3: one reward score per generation, staged in chunks of prompts like generation."""

import functools
from typing import Any

import polars as pl
from dagster import AssetExecutionContext, BackfillPolicy, MetadataValue, Output, asset

from croco_pipeline.constants import CROCO_GROUP, MODEL_POOL
from croco_pipeline.core.execution import many_languages
from croco_pipeline.core.execution.ray_pool import RewardWorker
from croco_pipeline.core.execution.staging import StagingArea
from croco_pipeline.core.io.hashing import config_hash
from croco_pipeline.core.sampling.scoring import reward_summary
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.compute import ComputeResource, k8s_gpu_step_tags
from croco_pipeline.resources.model_resources import RewardResource
from croco_pipeline.resources.settings import PipelineSettings
from croco_pipeline.resources.storage import StorageResource


@asset(
    partitions_def=language_partitions,
    group_name=CROCO_GROUP,
    code_version="2",
    kinds={"pytorch", "parquet"},
    pool=MODEL_POOL,
    op_tags=k8s_gpu_step_tags(ray_capable=True),
    # A backfill over several languages runs as one step: the reward model loads once for all of them.
    backfill_policy=BackfillPolicy.single_run(),
)
def reward_scores(
    context: AssetExecutionContext,
    generations: Any,  # a table; {language: table} in a run over several languages
    reward: RewardResource,
    storage_base: StorageResource,
    settings: PipelineSettings,
    compute: ComputeResource,
) -> Output:
    """The generations with ``reward`` (raw score), ``reward_model`` and truncation/skip flags."""
    return score_generations(context, generations, reward, storage_base, settings, compute)


def score_generations(
    context: AssetExecutionContext,
    generations: pl.DataFrame | dict[str, pl.DataFrame],
    reward: RewardResource,
    storage_base: StorageResource,
    settings: PipelineSettings,
    compute: ComputeResource,
) -> Output:
    """The body of every reward_scores asset (round 0's and later rounds'); over several languages
    (``core.execution.many_languages``) one scorer scores them all."""
    languages = list(context.partition_keys)
    many = len(languages) > 1
    if many:
        generations = many_languages.combine(generations)
        key, stage_label = many_languages.WORK_KEY, many_languages.stage_label(languages)
        chunk_prompts = settings.chunk_prompts * len(languages)
    else:
        key, stage_label, chunk_prompts = "prompt_id", languages[0], settings.chunk_prompts
    config = {
        "backend": reward.backend,
        "model": reward.model,
        "max_length": reward.max_length,
        "overflow": reward.overflow,
        "chunk_prompts": settings.chunk_prompts,
        "respond_in_language": settings.respond_in_language,
    }
    staging = StagingArea(
        storage_base.base_path,
        context.asset_key.path[-1],
        stage_label,
        config_hash(config, generations),
        storage_base.storage_options,
    )
    # One reward model in this process, or one per Ray worker actor (docs/gpu_cluster.md).
    scored, progress = compute.run_chunked(
        generations,
        key,
        chunk_prompts,
        staging,
        functools.partial(RewardWorker, reward.scorer_options(), settings.respond_in_language),
        context=context,
        kind="scoring",
    )
    summary = reward_summary(scored)
    if summary["truncated"] or summary["skipped"]:
        context.log.warning(
            f"{summary['truncated']} conversations were truncated and {summary['skipped']} skipped "
            f"because they exceed the reward model's max_length ({reward.max_length})."
        )
    if summary["non_finite"]:
        context.log.warning(
            f"{summary['non_finite']} of {summary['samples']} rewards are NaN or infinite; they stay in the table, "
            "and pairing drops and counts them (setting non_finite_rewards)."
        )
    context.add_output_metadata(
        {
            "reward_model": scored["reward_model"][0] if scored.height else "",
            "chunks_reused": progress.reused,
            # staged chunks that could not be read back (corrupted after they were written) and were computed again
            "chunks_unreadable": progress.unreadable,
            **{
                f"reward_{key}": MetadataValue.float(value)
                for key, value in summary.items()
                if isinstance(value, float)
            },
            **{key: value for key, value in summary.items() if isinstance(value, int)},
        }
    )
    # Output, not the bare frame: a step that opened a Dagster Pipes session (SLURM) must return typed results.
    return Output(many_languages.split(scored, languages) if many else scored)
