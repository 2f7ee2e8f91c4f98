"""Stage 5: LoRA checkpoints trained with TRL.

- ``dpo_checkpoint``: DPO per language on its in-language pairs (the paper's monolingual CroCo).
- ``multilingual_dpo_checkpoint``: DPO on the cross-language pairs of all languages (multilingual CroCo).
- ``sft_checkpoint``: SFT per language on the best-of-N samples (the paper's baseline).
- ``multilingual_sft_checkpoint``: SFT on the cross-language best-of-N records of all languages (the
  paper's multilingual SFT baseline).

Before a model is loaded, each asset works out the run's schedule (``core.training.schedule``) and refuses
a run that cannot learn. Each checkpoint is a folder under
``<storage>/checkpoints/<asset>/[language=<code>/]`` holding the adapter, the tokenizer, ``manifest.json``
and ``training_curves.png``; the asset's table is one row describing it, so SQL can list checkpoints too.
"""

import json
import tempfile
from pathlib import Path

import polars as pl
from dagster import AssetExecutionContext, AssetIn, MetadataValue, Output, asset

from croco_pipeline.constants import BASELINES_GROUP, CROCO_GROUP, CROSS_LANGUAGE_GROUP, MODEL_POOL
from croco_pipeline.core.io import atomic
from croco_pipeline.core.io.markdown import png_markdown
from croco_pipeline.core.models.specs import resolve_model
from croco_pipeline.core.rounds import round_models
from croco_pipeline.core.training.schedule import check_trainable, loss_progress, plan_training
from croco_pipeline.core.training.trainer import (
    CURVES_NAME,
    TrainingResult,
    train_dpo,
    train_sft,
    training_rows,
    world_size,
)
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.compute import ComputeResource
from croco_pipeline.resources.model_resources import PolicyResource
from croco_pipeline.resources.settings import PipelineSettings
from croco_pipeline.resources.storage import StorageResource

TRAINERS = {"dpo": train_dpo, "sft": train_sft}
# What a user changes when a run would not learn (the settings of resources.settings.config).
SCHEDULE_FIXES = (
    "To change it: more prompts (settings.prompt_dataset or settings.prompt_file, settings.max_train_prompts), "
    "more epochs (settings.training_epochs) or a fixed number of steps (settings.training_max_steps), a smaller "
    "effective batch (settings.training_effective_batch_size), or, knowingly, settings.min_optimizer_steps. "
    "`croco plan` shows every checkpoint's schedule before a run."
)


def train_and_publish(
    context: AssetExecutionContext,
    kind: str,
    data: pl.DataFrame,
    policy: PolicyResource,
    storage_base: StorageResource,
    settings: PipelineSettings,
    compute: ComputeResource,
    data_asset: str,
    round_policy: pl.DataFrame | None = None,
) -> Output:
    """Check the schedule, train into a scratch folder, publish it under the storage base, describe it in
    one row. The run reports to the tracker; the manifest, the model card and the metadata name its run.
    ``round_policy``: a later round's policy row (``core.rounds``): the settings round_init and
    round_reference then say which model the adapter goes on and which is the DPO reference."""
    asset_name = context.asset_key.path[-1]
    language = context.partition_key if context.has_partition_key else None
    training_settings = settings.dpo_settings() if kind == "dpo" else settings.sft_settings()
    schedule = plan_training(training_settings, len(training_rows(kind, data, training_settings)), world_size())
    check_trainable(
        schedule, settings.min_optimizer_steps, f"{asset_name} ({language or 'all languages'})", SCHEDULE_FIXES
    )
    context.log.info(f"{asset_name}: {schedule.describe()}")
    tracking = settings.tracking(tracker_run_name(context, asset_name, language))
    destination = storage_base.checkpoint_dir(asset_name, language)
    previous = round_policy["model_path"][0] if round_policy is not None else None
    models = round_models(policy.model, previous, settings.round_init, settings.round_reference)
    extra_arguments = {"reference_model": models.reference} if models.reference and kind == "dpo" else {}
    # Under SLURM the job trains on a node: its scratch folder goes where the nodes see it too.
    with tempfile.TemporaryDirectory(prefix=f"croco-{asset_name}-", dir=compute.scratch_root()) as scratch:
        result: TrainingResult = compute.call(
            context,
            "training",
            train_on,
            TRAINERS[kind],
            models.train_base,
            data,
            Path(scratch) / "adapter",
            training_settings,
            manifest_extra={
                "language": language,
                "policy": policy.model,
                "trained_on": models.train_base,
                "data_asset": data_asset,
                "data_partition": language,
                "dagster_run_id": context.run.run_id,
            },
            tracking=tracking,
            trust_remote_code=policy.trust_remote_code,
            **extra_arguments,
        )
        curves = result.output_dir / CURVES_NAME
        curves_markdown = png_markdown(curves, "training curves") if curves.exists() else "(no curves)"
        atomic.publish_directory(result.output_dir, destination, storage_base.storage_options)
    final = {key: value for key, value in result.final_metrics.items() if isinstance(value, (int, float))}
    # first/last step loss and the first/last quarter's mean: did the run learn? (the demo checks it)
    progress = loss_progress(result.log_history)
    final.update(progress)
    if progress and not progress["learned"]:
        context.log.warning(
            f"{asset_name} ({language or 'all languages'}): the training loss hardly fell "
            f"({progress['start_loss']:.3f} → {progress['end_loss']:.3f}, first → last quarter of the steps); "
            "the checkpoint may be close to its base model."
        )
    row = pl.DataFrame(
        {
            "language": [language],
            "checkpoint": [asset_name],
            "checkpoint_path": [destination],
            "base_model": [models.train_base],
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
            "optimizer_steps": schedule.optimizer_steps,
            "schedule": MetadataValue.json(schedule.as_dict()),
            "trained_on": models.train_base,
            "dpo_reference": models.reference or f"{models.train_base} (adapter off)",
            "train_seconds": MetadataValue.float(result.train_seconds),
            "final_metrics": MetadataValue.json(final),
            **(
                {"loss": f"{progress['first_loss']:.3f} → {progress['last_loss']:.3f} (first → last step)"}
                if progress
                else {}
            ),
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


def checkpoint_asset(
    name: str,
    kind: str,
    data_asset: str,
    group: str,
    per_language: bool,
    description: str,
    policy_asset: str | None = None,
):
    """A checkpoint asset: ``kind`` ("dpo" or "sft") training on ``data_asset``, per language or pooled.
    ``policy_asset``: a later round's policy (``round<k>_policy`` or ``round<k>_multilingual_policy``), which
    the round settings train from."""
    ins = {"data": AssetIn(data_asset)}
    if policy_asset is not None:
        ins["round_policy"] = AssetIn(policy_asset)
    decorator = asset(
        name=name,
        ins=ins,
        partitions_def=language_partitions if per_language else None,
        group_name=group,
        description=description,
        code_version="1",
        kinds={"pytorch", "trl"},
        pool=MODEL_POOL,
    )
    if policy_asset is None:

        @decorator
        def _checkpoint(
            context: AssetExecutionContext,
            data: pl.DataFrame,
            policy: PolicyResource,
            storage_base: StorageResource,
            settings: PipelineSettings,
            compute: ComputeResource,
        ) -> Output:
            return train_and_publish(context, kind, data, policy, storage_base, settings, compute, data_asset)

    else:

        @decorator
        def _checkpoint(
            context: AssetExecutionContext,
            data: pl.DataFrame,
            round_policy: pl.DataFrame,
            policy: PolicyResource,
            storage_base: StorageResource,
            settings: PipelineSettings,
            compute: ComputeResource,
        ) -> Output:
            return train_and_publish(
                context, kind, data, policy, storage_base, settings, compute, data_asset, round_policy=round_policy
            )

    return _checkpoint


dpo_checkpoint = checkpoint_asset(
    "dpo_checkpoint",
    "dpo",
    "preference_pairs",
    CROCO_GROUP,
    True,
    "LoRA adapter trained with DPO on the language's pairs (reference = base with adapter off).",
)
sft_checkpoint = checkpoint_asset(
    "sft_checkpoint",
    "sft",
    "sft_records",
    BASELINES_GROUP,
    True,
    "Baseline: LoRA adapter trained with SFT on the language's best-of-N samples (lr 2e-4).",
)
multilingual_dpo_checkpoint = checkpoint_asset(
    "multilingual_dpo_checkpoint",
    "dpo",
    "cross_language_pairs",
    CROSS_LANGUAGE_GROUP,
    False,
    "One LoRA adapter trained with DPO on the cross-language pairs of every language.",
)
multilingual_sft_checkpoint = checkpoint_asset(
    "multilingual_sft_checkpoint",
    "sft",
    "cross_language_sft_records",
    CROSS_LANGUAGE_GROUP,
    False,
    "Baseline: one LoRA adapter trained with SFT on the best sample of every conceptual prompt, pooled over "
    "the language group (the cross-language best-of-N records).",
)
