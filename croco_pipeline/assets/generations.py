"""Stage 2: N on-policy samples per training prompt from the policy model.

Work is staged every ``settings.chunk_prompts`` prompts: a run that crashed resumes from the last
finished chunk (see ``croco_pipeline.core.execution.staging``).
"""

import dataclasses
import functools
from typing import Any

import polars as pl
from dagster import AssetExecutionContext, BackfillPolicy, MetadataValue, Output, asset

from croco_pipeline.constants import CROCO_GROUP, MODEL_POOL
from croco_pipeline.core.execution import many_languages
from croco_pipeline.core.execution.ray_pool import GenerationWorker
from croco_pipeline.core.execution.staging import StagingArea
from croco_pipeline.core.io.hashing import config_hash
from croco_pipeline.core.sampling.samples import select_prompts
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.compute import ComputeResource, k8s_gpu_step_tags
from croco_pipeline.resources.model_resources import PolicyResource
from croco_pipeline.resources.settings import PipelineSettings
from croco_pipeline.resources.storage import StorageResource


@asset(
    partitions_def=language_partitions,
    group_name=CROCO_GROUP,
    code_version="1",
    kinds={"vllm", "parquet"},
    pool=MODEL_POOL,
    op_tags=k8s_gpu_step_tags(ray_capable=True),
    # A backfill over several languages runs as one step: the policy loads once for all of them.
    backfill_policy=BackfillPolicy.single_run(),
)
def generations(
    context: AssetExecutionContext,
    prompts: Any,  # a table; {language: table} in a run over several languages
    policy: PolicyResource,
    storage_base: StorageResource,
    settings: PipelineSettings,
    compute: ComputeResource,
) -> Output:
    """One row per sample: prompt_id, language, sample_idx, prompt, response, token count, finish reason.
    A run over several languages (a single-run backfill) loads the policy once and samples them together."""
    return sample_training_answers(context, prompts, policy, storage_base, settings, compute)


def _train_prompts(language: str, prompts: pl.DataFrame, settings: PipelineSettings) -> pl.DataFrame:
    train = select_prompts(prompts, "train", settings.max_train_prompts).select("prompt_id", "prompt")
    if train.is_empty():
        heldout = prompts.filter(pl.col("split") == "heldout").height
        raise ValueError(
            f"no train prompts for language {language!r}: its prompts have {heldout} held-out and "
            f"{prompts.height - heldout} train rows (settings.max_train_prompts={settings.max_train_prompts}). "
            "Generation samples answers to train prompts only: add rows with split='train' to the prompt file."
        )
    return train


def sample_training_answers(
    context: AssetExecutionContext,
    prompts: pl.DataFrame | dict[str, pl.DataFrame],
    policy: PolicyResource,
    storage_base: StorageResource,
    settings: PipelineSettings,
    compute: ComputeResource,
    *,
    weights_path: str | None = None,
    model_label: str | None = None,
) -> Output:
    """The body of every generations asset: round 0 samples from ``policy``; a later round from
    ``weights_path`` (its merged policy), labelled ``model_label`` in the rows' ``model`` column.
    Over several languages (``core.execution.many_languages``) one engine samples all their prompts."""
    languages = list(context.partition_keys)
    tables = prompts if isinstance(prompts, dict) else {languages[0]: prompts}
    trains = {language: _train_prompts(language, tables[language], settings) for language in languages}
    many = len(languages) > 1
    if many:
        train, key, language = many_languages.combine(trains), many_languages.WORK_KEY, None
        stage_label, chunk_prompts = many_languages.stage_label(languages), settings.chunk_prompts * len(languages)
    else:
        language = languages[0]
        train, key, stage_label, chunk_prompts = trains[language], "prompt_id", language, settings.chunk_prompts
    config = {
        "policy": policy.model,
        **({"weights": weights_path} if weights_path else {}),
        "backend": policy.backend,
        "sampling": dataclasses.asdict(settings.sampling(language)),
        **({"samples_by_language": {code: settings.samples_for(code) for code in languages}} if many else {}),
        "respond_in_language": settings.respond_in_language,
        "chunk_prompts": settings.chunk_prompts,
    }
    staging = StagingArea(
        storage_base.base_path,
        context.asset_key.path[-1],
        stage_label,
        config_hash(config, train),
        storage_base.storage_options,
    )
    log_chunk = lambda p: context.log.info(f"chunk {p.reused + p.computed}/{p.total} done ({p.reused} reused)")
    # One engine in this process, or one per Ray worker actor (docs/gpu_cluster.md).
    make_worker = functools.partial(
        GenerationWorker,
        policy.generator_options(seed=settings.seed),
        language,
        {code: settings.sampling(code) for code in languages},  # each language its own number of answers
        respond_in_language=settings.respond_in_language,
        model_label=model_label or policy.model,
        weights_path=weights_path,
    )
    samples, progress = compute.run_chunked(
        train,
        key,
        chunk_prompts,
        staging,
        make_worker,
        on_chunk=log_chunk,
        context=context,
        kind="generation",
    )
    context.add_output_metadata(
        {
            "prompts": train.height,
            "languages_in_this_step": ", ".join(languages),
            "chunks_reused": progress.reused,
            # staged chunks that could not be read back (corrupted after they were written) and were computed again
            "chunks_unreadable": progress.unreadable,
            "chunks_computed": progress.computed,
            **({"policy_checkpoint": MetadataValue.path(weights_path)} if weights_path else {}),
            "sampled_by": model_label or policy.model,
            "mean_tokens": MetadataValue.float(float(samples["num_tokens"].mean())),
            "truncated_share": MetadataValue.float(float((samples["finish_reason"] == "length").mean())),
            "empty_responses": int((samples["response"].str.strip_chars() == "").sum()),
        }
    )
    # Output, not the bare frame: a step that opened a Dagster Pipes session (SLURM) must return typed results.
    return Output(many_languages.split(samples, languages) if many else samples)
