"""Later rounds of CroCo: round k ≥ 1 samples from round k−1's checkpoint and trains again.

``round_assets(k)`` builds round k's per-language chain (names and settings: ``core.rounds``):
``round<k>_policy`` (round k−1's adapter merged into its base, published as a plain model folder),
``round<k>_generations``, ``round<k>_reward_scores``, ``round<k>_preference_pairs`` (+ unpaired, SFT
records), ``round<k>_dpo_checkpoint`` and ``round<k>_evaluation`` (against round 0's base answers). Round 0's
assets are their inputs and are never recomputed by a round's job.

``round_assets(k, "multilingual")`` builds the chain that samples from the multilingual checkpoint:
``round<k>_multilingual_policy`` (round k−1's ``multilingual_dpo_checkpoint`` merged once, not per language),
``round<k>_multilingual_generations`` and ``round<k>_multilingual_reward_scores`` per language (a backfill
over every language is one run: each model loads once), ``round<k>_cross_language_pairs`` (+ unpaired, SFT
records) pooled, ``round<k>_multilingual_dpo_checkpoint`` and ``round<k>_multilingual_evaluation`` per
language. ``rounds_report(n, chains)`` compares rounds.
"""

import tempfile
from pathlib import Path
from typing import Any

import polars as pl
from dagster import AssetExecutionContext, AssetIn, BackfillPolicy, MetadataValue, Output, asset

from croco_pipeline.assets.evaluation import system_evaluation
from croco_pipeline.assets.generations import sample_training_answers
from croco_pipeline.assets.pairs import cross_language_pairs_asset, in_language_pairs
from croco_pipeline.assets.rewards import score_generations
from croco_pipeline.assets.training import checkpoint_asset
from croco_pipeline.constants import MODEL_POOL, REPORT_GROUP
from croco_pipeline.core.io import atomic, storage
from croco_pipeline.core.io.markdown import markdown_table, png_markdown
from croco_pipeline.core.models.adapters import merge_adapter
from croco_pipeline.core.rounds import (
    RoundPolicy,
    plot_rounds,
    round_asset,
    round_checkpoint,
    round_evaluation,
    round_group,
    round_pairs,
    round_system,
    rounds_table,
)
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.compute import ComputeResource, k8s_gpu_step_tags
from croco_pipeline.resources.model_resources import PolicyResource, RewardResource
from croco_pipeline.resources.settings import PipelineSettings
from croco_pipeline.resources.storage import StorageResource


def _policy_asset(k: int, chain: RoundPolicy):
    previous_checkpoint = round_checkpoint(k - 1, chain)
    per_language = chain == "language"

    @asset(
        name=round_asset(_stage("policy", chain), k),
        ins={"checkpoint": AssetIn(previous_checkpoint)},
        partitions_def=language_partitions if per_language else None,
        group_name=round_group(k, chain),
        code_version="1",
        kinds={"pytorch"},
        pool=MODEL_POOL,
        description=f"Round {k}'s policy: {previous_checkpoint} merged into its base, as a plain model folder"
        + ("." if per_language else ", once for every language."),
    )
    def _policy(
        context: AssetExecutionContext, checkpoint: pl.DataFrame, storage_base: StorageResource
    ) -> Output[pl.DataFrame]:
        language = context.partition_key if per_language else None
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
        source = f"{previous_checkpoint}[{language}]" if language else previous_checkpoint
        row = pl.DataFrame(
            {
                "language": [language],
                "round": [k],
                "round_policy": [chain],
                "model_path": [destination],
                "source_checkpoint": [adapter],
                "source_asset": [source],
                "source_base_model": [checkpoint["base_model"][0]],
            },
            schema_overrides={"language": pl.String, "round": pl.Int32},
        )
        return Output(
            row,
            metadata={
                "model": MetadataValue.path(destination),
                "merged_from": MetadataValue.path(adapter),
                "source_asset": source,
            },
        )

    return _policy


def _generations_asset(k: int, chain: RoundPolicy):
    shared = chain == "multilingual"

    @asset(
        name=round_asset(_stage("generations", chain), k),
        ins={"prompts": AssetIn("prompts"), "round_policy": AssetIn(round_asset(_stage("policy", chain), k))},
        partitions_def=language_partitions,
        group_name=round_group(k, chain),
        code_version="1",
        kinds={"vllm", "parquet"},
        pool=MODEL_POOL,
        op_tags=k8s_gpu_step_tags(ray_capable=True),
        # One policy for every language: a backfill over several languages loads it once for all of them.
        backfill_policy=BackfillPolicy.single_run() if shared else None,
        description=f"Round {k}'s samples, from round {k}'s policy (the model column names its checkpoint).",
    )
    def _generations(
        context: AssetExecutionContext,
        prompts: Any,  # a table; {language: table} in a run over several languages
        round_policy: pl.DataFrame,
        policy: PolicyResource,
        storage_base: StorageResource,
        settings: PipelineSettings,
        compute: ComputeResource,
    ) -> Output:  # a table, or {language: table} in a run over several languages
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


def _reward_asset(k: int, chain: RoundPolicy):
    @asset(
        name=round_asset(_stage("reward_scores", chain), k),
        ins={"generations": AssetIn(round_asset(_stage("generations", chain), k))},
        partitions_def=language_partitions,
        group_name=round_group(k, chain),
        code_version="2",
        kinds={"pytorch", "parquet"},
        pool=MODEL_POOL,
        op_tags=k8s_gpu_step_tags(ray_capable=True),
        # The reward model is the same in every round: a backfill over several languages loads it once.
        backfill_policy=BackfillPolicy.single_run(),
        description=f"Round {k}'s samples with their reward scores.",
    )
    def _rewards(
        context: AssetExecutionContext,
        generations: Any,  # a table; {language: table} in a run over several languages
        reward: RewardResource,
        storage_base: StorageResource,
        settings: PipelineSettings,
        compute: ComputeResource,
    ) -> Output:  # a table, or {language: table} in a run over several languages
        return score_generations(context, generations, reward, storage_base, settings, compute)

    return _rewards


def _stage(name: str, chain: RoundPolicy) -> str:
    """A stage's name in a round's chain: ``generations``, or ``multilingual_generations`` in the chain that
    samples from the multilingual checkpoint."""
    return name if chain == "language" else f"multilingual_{name}"


def round_assets(k: int, chain: RoundPolicy = "language") -> list:
    """Round ``k``'s assets (k ≥ 1), in pipeline order, of the chain that samples from ``chain``'s checkpoint
    (``language`` or ``multilingual``)."""
    if k < 1:
        raise ValueError(f"round 0 is the croco group itself; later rounds count from 1, got {k}")
    group = round_group(k, chain)
    checkpoint = round_checkpoint(k, chain)
    common = [_policy_asset(k, chain), _generations_asset(k, chain), _reward_asset(k, chain)]
    if chain == "language":
        prefix = round_asset("", k)
        return common + [
            in_language_pairs(prefix, group),
            checkpoint_asset(
                checkpoint,
                "dpo",
                round_pairs(k),
                group,
                True,
                f"Round {k}'s LoRA adapter, trained with DPO on round {k}'s pairs (settings round_init, "
                "round_reference).",
                policy_asset=round_asset("policy", k),
            ),
            system_evaluation(round_system(k), checkpoint, prefix, group),
        ]
    return common + [
        cross_language_pairs_asset(round_asset("", k), round_asset("multilingual_reward_scores", k), group),
        checkpoint_asset(
            checkpoint,
            "dpo",
            round_pairs(k, chain),
            group,
            False,
            f"Round {k}'s multilingual LoRA adapter, trained with DPO on round {k}'s cross-language pairs of "
            "every language (settings round_init, round_reference).",
            policy_asset=round_asset("multilingual_policy", k),
        ),
        system_evaluation(round_system(k, chain), checkpoint, round_asset("multilingual_", k), group),
    ]


def rounds_report(rounds: int, round_policies: tuple[RoundPolicy, ...] = ("language",)):
    """The comparison across rounds: one row per round (and round policy) per language, and a line chart."""
    keys = [(policy, k) for policy in round_policies for k in range(rounds)]
    ins = {
        f"evaluation__{policy}_{k}": AssetIn(round_evaluation(k, policy), metadata={"allow_missing_partitions": True})
        for policy, k in keys
    }
    # The per-language chain's pairs are partitioned inputs; the multilingual chain's are one pooled table
    # each, read from storage when it is there (an unpartitioned input would fail the report until it is).
    ins |= {
        f"pairs__{policy}_{k}": AssetIn(round_pairs(k, policy), metadata={"allow_missing_partitions": True})
        for policy, k in keys
        if policy == "language"
    }

    @asset(name="croco_rounds_report", group_name=REPORT_GROUP, code_version="3", kinds={"parquet"}, ins=ins)
    def _report(context: AssetExecutionContext, storage_base: StorageResource, **tables) -> pl.DataFrame:
        """Each round's checkpoint against the base model, per language: win rate, reward, in-language share."""

        def stacked(partitions: dict[str, pl.DataFrame]) -> pl.DataFrame:
            return pl.concat(list(partitions.values()), how="diagonal_relaxed") if partitions else pl.DataFrame()

        table = rounds_table(
            {(policy, k): stacked(tables[f"evaluation__{policy}_{k}"]) for policy, k in keys},
            {
                (policy, k): stacked(tables[f"pairs__{policy}_{k}"])
                if policy == "language"
                else _pooled_table(storage_base, round_pairs(k, policy))
                for policy, k in keys
            },
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


def _pooled_table(storage_base: StorageResource, asset_name: str) -> pl.DataFrame:
    """An unpartitioned asset's table, or an empty one when it has not been materialised yet."""
    path = storage.join(storage.partition_dir(storage_base.base_path, asset_name, None), "data.parquet")
    if not storage.exists(path, storage_base.storage_options):
        return pl.DataFrame()
    return storage.read_parquet(path, storage_base.storage_options)
