"""Later rounds of CroCo: round k ≥ 1 samples from round k−1's checkpoint and trains again.

``round_assets(k)`` builds round k's per-language assets (names and settings: ``core.rounds``):
``round<k>_policy`` (round k−1's adapter merged into its base, published as a plain model folder),
``round<k>_generations``, ``round<k>_reward_scores``, ``round<k>_preference_pairs`` (+ unpaired, SFT
records), ``round<k>_dpo_checkpoint`` and ``round<k>_evaluation`` (against round 0's base answers). Round 0's
assets are their inputs and are never recomputed by a round's job. ``rounds_report(n)`` compares rounds.
"""

import tempfile
from pathlib import Path

import polars as pl
from dagster import AssetExecutionContext, AssetIn, MetadataValue, Output, asset

from croco_pipeline.assets.evaluation import system_evaluation
from croco_pipeline.assets.generations import sample_training_answers
from croco_pipeline.assets.pairs import in_language_pairs
from croco_pipeline.assets.rewards import score_generations
from croco_pipeline.assets.training import checkpoint_asset
from croco_pipeline.constants import MODEL_POOL, REPORT_GROUP
from croco_pipeline.core.io import atomic, storage
from croco_pipeline.core.io.markdown import markdown_table, png_markdown
from croco_pipeline.core.models.adapters import merge_adapter
from croco_pipeline.core.rounds import plot_rounds, round_asset, round_group, round_system, rounds_table
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.compute import ComputeResource, k8s_gpu_step_tags
from croco_pipeline.resources.model_resources import PolicyResource, RewardResource
from croco_pipeline.resources.settings import PipelineSettings
from croco_pipeline.resources.storage import StorageResource


def _policy_asset(k: int):
    previous_checkpoint = round_asset("dpo_checkpoint", k - 1)

    @asset(
        name=round_asset("policy", k),
        ins={"checkpoint": AssetIn(previous_checkpoint)},
        partitions_def=language_partitions,
        group_name=round_group(k),
        code_version="1",
        kinds={"pytorch"},
        pool=MODEL_POOL,
        description=f"Round {k}'s policy: {previous_checkpoint} merged into its base, as a plain model folder.",
    )
    def _policy(
        context: AssetExecutionContext, checkpoint: pl.DataFrame, storage_base: StorageResource
    ) -> Output[pl.DataFrame]:
        language = context.partition_key
        adapter = checkpoint["checkpoint_path"][0]
        if storage.is_remote(storage_base.base_path):
            raise ValueError(
                f"rounds after the first need a local storage base (CROCO_STORAGE), not {storage_base.base_path}: "
                "the merged policy is served and trained from a folder."
            )
        destination = storage_base.checkpoint_dir(context.asset_key.path[-1], language)
        with tempfile.TemporaryDirectory(prefix="croco-round-policy-") as scratch:
            merged = merge_adapter(adapter, Path(scratch) / "model")
            atomic.publish_directory(merged, destination, storage_base.storage_options)
        row = pl.DataFrame(
            {
                "language": [language],
                "round": [k],
                "model_path": [destination],
                "source_checkpoint": [adapter],
                "source_asset": [f"{previous_checkpoint}[{language}]"],
                "source_base_model": [checkpoint["base_model"][0]],
            },
            schema_overrides={"language": pl.String, "round": pl.Int32},
        )
        return Output(
            row,
            metadata={
                "model": MetadataValue.path(destination),
                "merged_from": MetadataValue.path(adapter),
                "source_asset": f"{previous_checkpoint}[{language}]",
            },
        )

    return _policy


def _generations_asset(k: int):
    @asset(
        name=round_asset("generations", k),
        ins={"prompts": AssetIn("prompts"), "round_policy": AssetIn(round_asset("policy", k))},
        partitions_def=language_partitions,
        group_name=round_group(k),
        code_version="1",
        kinds={"vllm", "parquet"},
        pool=MODEL_POOL,
        op_tags=k8s_gpu_step_tags(ray_capable=True),
        description=f"Round {k}'s samples, from round {k}'s policy (the model column names its checkpoint).",
    )
    def _generations(
        context: AssetExecutionContext,
        prompts: pl.DataFrame,
        round_policy: pl.DataFrame,
        policy: PolicyResource,
        storage_base: StorageResource,
        settings: PipelineSettings,
        compute: ComputeResource,
    ) -> Output[pl.DataFrame]:
        return sample_training_answers(
            context,
            prompts,
            policy,
            storage_base,
            settings,
            compute,
            weights_path=round_policy["model_path"][0],
            model_label=round_policy["source_asset"][0],
        )

    return _generations


def _reward_asset(k: int):
    @asset(
        name=round_asset("reward_scores", k),
        ins={"generations": AssetIn(round_asset("generations", k))},
        partitions_def=language_partitions,
        group_name=round_group(k),
        code_version="2",
        kinds={"pytorch", "parquet"},
        pool=MODEL_POOL,
        op_tags=k8s_gpu_step_tags(ray_capable=True),
        description=f"Round {k}'s samples with their reward scores.",
    )
    def _rewards(
        context: AssetExecutionContext,
        generations: pl.DataFrame,
        reward: RewardResource,
        storage_base: StorageResource,
        settings: PipelineSettings,
        compute: ComputeResource,
    ) -> Output[pl.DataFrame]:
        return score_generations(context, generations, reward, storage_base, settings, compute)

    return _rewards


def round_assets(k: int) -> list:
    """Round ``k``'s per-language assets (k ≥ 1), in pipeline order."""
    if k < 1:
        raise ValueError(f"round 0 is the croco group itself; later rounds count from 1, got {k}")
    prefix = round_asset("", k)
    group = round_group(k)
    return [
        _policy_asset(k),
        _generations_asset(k),
        _reward_asset(k),
        in_language_pairs(prefix, group),
        checkpoint_asset(
            round_asset("dpo_checkpoint", k),
            "dpo",
            round_asset("preference_pairs", k),
            group,
            True,
            f"Round {k}'s LoRA adapter, trained with DPO on round {k}'s pairs (settings round_init, round_reference).",
            policy_asset=round_asset("policy", k),
        ),
        system_evaluation(round_system(k), round_asset("dpo_checkpoint", k), prefix, group),
    ]


def rounds_report(rounds: int):
    """The comparison across rounds: one row per round per language, and a line chart."""
    evaluations = {k: round_asset("evaluation", k) for k in range(rounds)}
    pairs = {k: round_asset("preference_pairs", k) for k in range(rounds)}
    ins = {
        f"evaluation_{k}": AssetIn(name, metadata={"allow_missing_partitions": True})
        for k, name in evaluations.items()
    }
    ins |= {f"pairs_{k}": AssetIn(name, metadata={"allow_missing_partitions": True}) for k, name in pairs.items()}

    @asset(name="croco_rounds_report", group_name=REPORT_GROUP, code_version="1", kinds={"parquet"}, ins=ins)
    def _report(context: AssetExecutionContext, storage_base: StorageResource, **tables) -> pl.DataFrame:
        """Each round's checkpoint against the base model, per language: win rate, reward, in-language share."""

        def stacked(partitions: dict[str, pl.DataFrame]) -> pl.DataFrame:
            return pl.concat(list(partitions.values()), how="diagonal_relaxed") if partitions else pl.DataFrame()

        table = rounds_table(
            {k: stacked(tables[f"evaluation_{k}"]) for k in range(rounds)},
            {k: stacked(tables[f"pairs_{k}"]) for k in range(rounds)},
        )
        folder = storage.join(storage_base.base_path, "report", "rounds")
        with tempfile.TemporaryDirectory(prefix="croco-rounds-") as scratch:
            chart = plot_rounds(table, Path(scratch) / "rounds.png")
            chart_markdown = png_markdown(chart, "win rate by round") if chart else "(nothing judged yet)"
            (Path(scratch) / "rounds.md").write_text(
                "# CroCo by round\n\n" + markdown_table(table, max_rows=500) + "\n"
            )
            atomic.publish_directory(Path(scratch), folder, storage_base.storage_options)
        context.add_output_metadata(
            {
                "rounds": MetadataValue.md(markdown_table(table, max_rows=100)),
                "win_rate_by_round": MetadataValue.md(chart_markdown),
                "report_folder": MetadataValue.path(folder),
            }
        )
        return table

    return _report
