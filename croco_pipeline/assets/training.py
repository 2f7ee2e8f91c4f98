"""Stage 5: a LoRA DPO checkpoint per language (the paper's monolingual variant), trained with TRL."""

import base64
import dataclasses
import json
import tempfile
from pathlib import Path

import polars as pl
from dagster import AssetExecutionContext, MetadataValue, asset

from croco_pipeline.core import storage
from croco_pipeline.core.training import DPOSettings, train_dpo
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.models import PolicyResource
from croco_pipeline.resources.settings import PipelineSettings
from croco_pipeline.resources.storage import StorageResource


def dpo_settings_for(settings: PipelineSettings) -> DPOSettings:
    """The paper's hyperparameters on GPUs, small ones on a laptop, a few steps in tests."""
    chosen = DPOSettings() if settings.training == "paper" else DPOSettings.embedded()
    max_steps = settings.training_max_steps or (2 if settings.training == "tiny" else None)
    return dataclasses.replace(chosen, max_steps=max_steps, seed=settings.seed) if max_steps else chosen


def png_markdown(path: Path, title: str) -> str:
    """A PNG inlined in Markdown, so the plot shows in the Dagster UI wherever the data lives."""
    encoded = base64.b64encode(path.read_bytes()).decode()
    return f"![{title}](data:image/png;base64,{encoded})"


@asset(partitions_def=language_partitions, group_name="croco", code_version="1", kinds={"pytorch", "trl"})
def dpo_checkpoint(
    context: AssetExecutionContext,
    preference_pairs: pl.DataFrame,
    policy: PolicyResource,
    storage_base: StorageResource,
    settings: PipelineSettings,
) -> pl.DataFrame:
    """A LoRA adapter trained with DPO on the language's pairs (reference = base with adapter off).

    The adapter folder (adapter, tokenizer, manifest.json, training_curves.png) lives under
    ``<storage>/checkpoints/dpo_checkpoint/language=<code>/``; the asset's table is its manifest row.
    """
    language = context.partition_key
    destination = storage_base.checkpoint_dir("dpo_checkpoint", language)
    dpo = dpo_settings_for(settings)
    with tempfile.TemporaryDirectory(prefix="croco-dpo-") as scratch:
        result = train_dpo(
            policy.model_path(), preference_pairs, Path(scratch) / "adapter", dpo,
            manifest_extra={"language": language, "policy": policy.model, "pairs_asset": "preference_pairs"},
        )
        curves = result.output_dir / "training_curves.png"
        curves_markdown = png_markdown(curves, "training curves") if curves.exists() else "(no curves)"
        storage.publish_directory(result.output_dir, destination, storage_base.storage_options)
    final = {key: value for key, value in result.final_metrics.items() if isinstance(value, (int, float))}
    context.add_output_metadata(
        {
            "checkpoint": MetadataValue.path(destination),
            "pairs": result.num_examples,
            "train_seconds": MetadataValue.float(result.train_seconds),
            "final_metrics": MetadataValue.json(final),
            "training_curves": MetadataValue.md(curves_markdown),
        }
    )
    return pl.DataFrame(
        {
            "language": [language],
            "checkpoint_path": [destination],
            "base_model": [policy.model],
            "num_pairs": [result.num_examples],
            "train_seconds": [result.train_seconds],
            "final_metrics": [json.dumps(final)],
        }
    )
