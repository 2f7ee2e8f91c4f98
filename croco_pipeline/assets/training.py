"""Stage 5: LoRA checkpoints trained with TRL.

- ``dpo_checkpoint``: DPO per language on its in-language pairs (the paper's monolingual CroCo).
- ``multilingual_dpo_checkpoint``: DPO on the cross-language pairs of all languages (multilingual CroCo).
- ``sft_checkpoint``: SFT per language on the best-of-N samples (the paper's baseline).
- ``multilingual_sft_checkpoint``: SFT on the cross-language best-of-N records of all languages (the
  paper's multilingual SFT baseline).

Each checkpoint is a folder under ``<storage>/checkpoints/<asset>/[language=<code>/]`` holding the
adapter, the tokenizer, ``manifest.json`` and ``training_curves.png``; the asset's table is one row
describing it, so SQL can list checkpoints too.
"""

import json
import tempfile
from pathlib import Path

import polars as pl
from dagster import AssetExecutionContext, MetadataValue, Output, asset

from croco_pipeline.constants import BASELINES_GROUP, CROCO_GROUP, CROSS_LANGUAGE_GROUP, MODEL_POOL
from croco_pipeline.core.io import atomic
from croco_pipeline.core.io.markdown import png_markdown
from croco_pipeline.core.models.specs import resolve_model
from croco_pipeline.core.training.tracking import Tracking
from croco_pipeline.core.training.trainer import CURVES_NAME, TrainingResult, train_dpo, train_sft
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.compute import ComputeResource
from croco_pipeline.resources.model_resources import PolicyResource
from croco_pipeline.resources.settings import PipelineSettings
from croco_pipeline.resources.storage import StorageResource


def train_and_publish(
    context: AssetExecutionContext,
    train,
    data: pl.DataFrame,
    training_settings,
    policy: PolicyResource,
    storage_base: StorageResource,
    asset_name: str,
    language: str | None,
    data_asset: str,
    tracking: Tracking,
    compute: ComputeResource,
) -> Output:
    """Train into a scratch folder, publish it under the storage base, describe it in one row.

    The run reports to ``tracking`` (Trackio by default); the manifest, the model card and the asset
    metadata name the tracker run."""
    destination = storage_base.checkpoint_dir(asset_name, language)
    # Under SLURM the job trains on a node: its scratch folder goes where the nodes see it too.
    scratch_root = compute.scratch_root()
    with tempfile.TemporaryDirectory(prefix=f"croco-{asset_name}-", dir=scratch_root) as scratch:
        result: TrainingResult = compute.call(
            context,
            "training",
            train_on,
            train,
            policy.model,
            data,
            Path(scratch) / "adapter",
            training_settings,
            manifest_extra={
                "language": language,
                "policy": policy.model,
                "data_asset": data_asset,
                "data_partition": language,
                "dagster_run_id": context.run.run_id,
            },
            tracking=tracking,
        )
        curves = result.output_dir / CURVES_NAME
        curves_markdown = png_markdown(curves, "training curves") if curves.exists() else "(no curves)"
        atomic.publish_directory(result.output_dir, destination, storage_base.storage_options)
    final = {key: value for key, value in result.final_metrics.items() if isinstance(value, (int, float))}
    row = pl.DataFrame(
        {
            "language": [language],
            "checkpoint": [asset_name],
            "checkpoint_path": [destination],
            "base_model": [policy.model],
            "num_examples": [result.num_examples],
            "train_seconds": [result.train_seconds],
            "final_metrics": [json.dumps(final)],
        },
        schema_overrides={"language": pl.String},
    )
    return Output(
        row,
        metadata={
            "checkpoint": MetadataValue.path(destination),
            "examples": result.num_examples,
            "train_seconds": MetadataValue.float(result.train_seconds),
            "final_metrics": MetadataValue.json(final),
            "training_curves": MetadataValue.md(curves_markdown),
            "tracker_run": MetadataValue.json(tracking.describe()),
        },
    )


def train_on(train, model: str, *args, **kwargs) -> TrainingResult:
    """``train`` on the policy ``model`` (resolved where the training runs: here or on a SLURM node)."""
    return train(resolve_model(model), *args, **kwargs)


def tracker_run_name(context: AssetExecutionContext, name: str, language: str | None) -> str:
    """``<asset>-<language|all>-<first 8 characters of the Dagster run id>``: one tracker run per step."""
    return f"{name}-{language or 'all'}-{context.run.run_id[:8]}"


_COMMON = dict(code_version="1", kinds={"pytorch", "trl"}, pool=MODEL_POOL)


@asset(partitions_def=language_partitions, group_name=CROCO_GROUP, **_COMMON)
def dpo_checkpoint(
    context: AssetExecutionContext,
    preference_pairs: pl.DataFrame,
    policy: PolicyResource,
    storage_base: StorageResource,
    settings: PipelineSettings,
    compute: ComputeResource,
) -> Output:
    """LoRA adapter trained with DPO on the language's pairs (reference = base with adapter off)."""
    return train_and_publish(
        context,
        train_dpo,
        preference_pairs,
        settings.dpo_settings(),
        policy,
        storage_base,
        "dpo_checkpoint",
        context.partition_key,
        "preference_pairs",
        settings.tracking(tracker_run_name(context, "dpo_checkpoint", context.partition_key)),
        compute,
    )


@asset(partitions_def=language_partitions, group_name=BASELINES_GROUP, **_COMMON)
def sft_checkpoint(
    context: AssetExecutionContext,
    sft_records: pl.DataFrame,
    policy: PolicyResource,
    storage_base: StorageResource,
    settings: PipelineSettings,
    compute: ComputeResource,
) -> Output:
    """Baseline: LoRA adapter trained with SFT on the language's best-of-N samples (lr 2e-4)."""
    return train_and_publish(
        context,
        train_sft,
        sft_records,
        settings.sft_settings(),
        policy,
        storage_base,
        "sft_checkpoint",
        context.partition_key,
        "sft_records",
        settings.tracking(tracker_run_name(context, "sft_checkpoint", context.partition_key)),
        compute,
    )


@asset(group_name=CROSS_LANGUAGE_GROUP, **_COMMON)
def multilingual_dpo_checkpoint(
    context: AssetExecutionContext,
    cross_language_pairs: pl.DataFrame,
    policy: PolicyResource,
    storage_base: StorageResource,
    settings: PipelineSettings,
    compute: ComputeResource,
) -> Output:
    """One LoRA adapter trained with DPO on the cross-language pairs of every language."""
    return train_and_publish(
        context,
        train_dpo,
        cross_language_pairs,
        settings.dpo_settings(),
        policy,
        storage_base,
        "multilingual_dpo_checkpoint",
        None,
        "cross_language_pairs",
        settings.tracking(tracker_run_name(context, "multilingual_dpo_checkpoint", None)),
        compute,
    )


@asset(group_name=CROSS_LANGUAGE_GROUP, **_COMMON)
def multilingual_sft_checkpoint(
    context: AssetExecutionContext,
    cross_language_sft_records: pl.DataFrame,
    policy: PolicyResource,
    storage_base: StorageResource,
    settings: PipelineSettings,
    compute: ComputeResource,
) -> Output:
    """Baseline: one LoRA adapter trained with SFT on the best sample of every conceptual prompt,
    pooled over the language group (the cross-language best-of-N records)."""
    return train_and_publish(
        context,
        train_sft,
        cross_language_sft_records,
        settings.sft_settings(),
        policy,
        storage_base,
        "multilingual_sft_checkpoint",
        None,
        "cross_language_sft_records",
        settings.tracking(tracker_run_name(context, "multilingual_sft_checkpoint", None)),
        compute,
    )
