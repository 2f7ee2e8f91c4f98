"""Stage 6: every system against the base model on held-out prompts, plus structured checks.

- ``base_answers`` / ``base_evaluation``: the base model's answers (scored) and its own row.
- ``evaluation`` (CroCo monolingual DPO), ``sft_evaluation`` (best-of-N SFT), ``multilingual_evaluation``
  (CroCo multilingual DPO) and ``multilingual_sft_evaluation`` (SFT on the cross-language best-of-N
  records): the system's answers judged against the base answers, one summary row per language, and
  every judgment as a row for SQL.
- ``reward_model_transfer``: how well the reward scorer ranks known better/worse answers in the language.
- ``euroeval_scores``: EuroEval's structured tasks for the base and every trained checkpoint (merged
  first), as the paper ran them. It has its own job (``euroeval_job``) and is left out of ``croco_job``:
  on a GPU it takes hours. Without the ``euroeval`` package or its data it is skipped, with the reason
  in the UI, rather than failing.
"""

import json
import tempfile
from pathlib import Path

import polars as pl
from dagster import AssetExecutionContext, AssetIn, AssetOut, MetadataValue, Output, asset, multi_asset

from croco_pipeline.constants import (
    BASELINES_GROUP,
    EVALUATION_GROUP,
    MODEL_POOL,
    MULTILINGUAL_EVALUATION_GROUP,
    REPORT_GROUP,
)
from croco_pipeline.core.evaluation.euroeval import run_euroeval_systems, trained_systems
from croco_pipeline.core.evaluation.heldout import load_heldout_prompts
from croco_pipeline.core.evaluation.model_calls import (
    Answering,
    CheckpointEvaluation,
    answer_as_base,
    evaluate_checkpoint,
    transfer_accuracy,
)
from croco_pipeline.core.evaluation.report import EFFECT_CRITERIA, build_report_table, effect_table, write_report
from croco_pipeline.core.evaluation.reward_transfer import empty_accuracy_table, transfer_languages
from croco_pipeline.core.evaluation.versus_base import Judging
from croco_pipeline.core.io import atomic, cards, storage
from croco_pipeline.core.io.markdown import markdown_table, png_markdown
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.compute import ComputeResource
from croco_pipeline.resources.model_resources import PolicyResource, RewardResource
from croco_pipeline.resources.settings import PipelineSettings
from croco_pipeline.resources.storage import StorageResource


def _answering(
    language: str, policy: PolicyResource, reward: RewardResource, settings: PipelineSettings, **policy_options
) -> Answering:
    """How base and tuned models answer the held-out prompts, from the run's resources and settings."""
    return Answering(
        language=language,
        policy_options=policy.generator_options(seed=settings.seed, **policy_options),
        scorer_options=reward.scorer_options(),
        sampling=settings.eval_sampling(),
        respond_in_language=settings.respond_in_language,
        model_label=policy.model,
        multiple_choice=settings.multiple_choice,
    )


@multi_asset(
    partitions_def=language_partitions,
    group_name=EVALUATION_GROUP,
    pool=MODEL_POOL,
    outs={
        "base_answers": AssetOut(
            code_version="2", kinds={"parquet"}, description="The base model's held-out answers, scored."
        ),
        "base_evaluation": AssetOut(
            code_version="1", kinds={"parquet"}, description="The base model's own evaluation row."
        ),
    },
)
def base_answers(
    context: AssetExecutionContext,
    prompts: pl.DataFrame,
    policy: PolicyResource,
    reward: RewardResource,
    settings: PipelineSettings,
    compute: ComputeResource,
):
    """Answers of the base model to the held-out prompts (the reference every system is judged against)."""
    language = context.partition_key
    heldout = load_heldout_prompts(language, settings.heldout_source, settings.max_eval_prompts, prompts)
    if heldout.note:
        context.log.warning(heldout.note)
    answering = _answering(language, policy, reward, settings)
    answers, row = compute.call(
        context, "evaluation", answer_as_base, answering, heldout.prompts, output_name="base_answers"
    )
    if "subcategory" in heldout.prompts.columns:  # m-ArenaHard: win rates are also reported per subcategory
        answers = answers.join(heldout.prompts.select("prompt_id", "subcategory"), on="prompt_id", how="left")
    yield Output(answers, output_name="base_answers", metadata={"heldout_source": heldout.source})
    yield Output(
        pl.DataFrame([row]),
        output_name="base_evaluation",
        metadata={"row": MetadataValue.md(markdown_table(pl.DataFrame([row])))},
    )


def _base_mc_p_correct(base_evaluation: pl.DataFrame) -> dict[str, float] | None:
    """The base model's p(correct) per multiple-choice question, from its evaluation row (None: no MC set)."""
    if "mc_p_correct" not in base_evaluation.columns or base_evaluation["mc_p_correct"][0] is None:
        return None
    return json.loads(base_evaluation["mc_p_correct"][0])


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def system_evaluation(system: str, checkpoint_asset: str, output_prefix: str, group: str):
    """The evaluation assets of one system: ``<prefix>evaluation`` and ``<prefix>evaluation_judgments``."""

    @multi_asset(
        name=f"{output_prefix}evaluation",
        partitions_def=language_partitions,
        group_name=group,
        pool=MODEL_POOL,
        ins={
            "base_answers": AssetIn("base_answers"),
            "base_evaluation": AssetIn("base_evaluation"),
            "checkpoint": AssetIn(checkpoint_asset),
        },
        outs={
            f"{output_prefix}evaluation": AssetOut(
                code_version="4",
                kinds={"parquet"},
                description=f"Win rate of {system} over the base model, per language.",
            ),
            f"{output_prefix}evaluation_judgments": AssetOut(
                code_version="3", kinds={"parquet"}, description=f"Every judged ({system}, base) answer pair."
            ),
        },
    )
    def _evaluate(
        context: AssetExecutionContext,
        base_answers: pl.DataFrame,
        base_evaluation: pl.DataFrame,
        checkpoint: pl.DataFrame,
        policy: PolicyResource,
        judge_model: PolicyResource,
        reward: RewardResource,
        storage_base: StorageResource,
        settings: PipelineSettings,
        compute: ComputeResource,
    ):
        language = context.partition_key
        request = CheckpointEvaluation(
            system=system,
            checkpoint_path=checkpoint["checkpoint_path"][0],
            storage_options=storage_base.storage_options,
            base_answers=base_answers,
            judge_options=judge_model.generator_options(seed=settings.seed) if settings.judge == "llm" else None,
            judging=Judging(
                seed=settings.seed,
                max_new_tokens=settings.judge_max_new_tokens,
                temperature=settings.judge_temperature,
                prompt_style=settings.judge_prompt,
                tie_handling=settings.tie_handling,
            ),
            # An adapter trained on another model than the policy (a later round's, on the previous round's
            # model) is served merged into its own base: LoRA serving would put it on the policy.
            adapter_serving=policy.adapter_serving
            if checkpoint["base_model"][0] in (None, policy.model)
            else "merged",
            base_mc_p_correct=_base_mc_p_correct(base_evaluation),
        )
        answering = _answering(language, policy, reward, settings, enable_lora=True)
        result = compute.call(
            context, "evaluation", evaluate_checkpoint, answering, request, output_name=f"{output_prefix}evaluation"
        )
        summary, judgments = result.summary, result.judgments
        row = summary.row(0, named=True)
        if not row["n_judged"]:
            context.log.warning(
                f"None of the {row['n_unjudged']} judgments of {system} in {language} has a verdict the parser can "
                f"read: no win rate. The judge's outputs are in {output_prefix}evaluation_judgments (judge_text)."
            )
        tracking = settings.tracking(f"{output_prefix}evaluation-{language}-{context.run.run_id[:8]}")
        tracking.log_metrics(row, config={"system": system, "language": language, "checkpoint": checkpoint_asset})
        # The adapter's model card gets the evaluation it was missing.
        cards.add_evaluation(
            checkpoint["checkpoint_path"][0], row, storage_base.storage_options, dagster_run_id=context.run.run_id
        )
        yield Output(
            summary,
            output_name=f"{output_prefix}evaluation",
            metadata={
                # NaN when no judgment has a verdict (or, for the error, only one does)
                "win_rate": MetadataValue.float(_or_nan(row["win_rate"])),
                "standard_error": MetadataValue.float(_or_nan(row["standard_error"])),
                "judged": row["n_judged"],
                "without_verdict": row["n_unjudged"],
                "summary": MetadataValue.md(markdown_table(summary)),
                # how the tuned model was served, and how much of its adapter the served weights keep
                "adapter_serving": f"{row['adapter_serving']} ({row['adapter_dtype']})",
                "adapter_kept_fraction": MetadataValue.float(_or_nan(row["adapter_kept_fraction"])),
                **(
                    {"win_rate_by_subcategory": MetadataValue.md(markdown_table(result.subcategories, max_rows=50))}
                    if result.subcategories.height
                    else {}
                ),
                "tracker_run": MetadataValue.json(tracking.describe()),
            },
        )
        yield Output(judgments, output_name=f"{output_prefix}evaluation_judgments")

    return _evaluate


evaluation = system_evaluation("croco_monolingual", "dpo_checkpoint", "", EVALUATION_GROUP)
sft_evaluation = system_evaluation("sft_best_of_n", "sft_checkpoint", "sft_", BASELINES_GROUP)
multilingual_evaluation = system_evaluation(
    "croco_multilingual", "multilingual_dpo_checkpoint", "multilingual_", MULTILINGUAL_EVALUATION_GROUP
)
multilingual_sft_evaluation = system_evaluation(
    "sft_multilingual", "multilingual_sft_checkpoint", "multilingual_sft_", MULTILINGUAL_EVALUATION_GROUP
)


@asset(
    partitions_def=language_partitions,
    group_name=EVALUATION_GROUP,
    code_version="1",
    kinds={"parquet"},
    pool=MODEL_POOL,
)
def reward_model_transfer(
    context: AssetExecutionContext, reward: RewardResource, compute: ComputeResource
) -> Output[pl.DataFrame]:
    """Pairwise accuracy of the reward scorer on shipped better/worse answers in the language
    (a wrong answer, the right answer in another language, a degenerate answer): the paper's claim
    that an English-trained reward model ranks answers within other languages."""
    language = context.partition_key
    if language not in transfer_languages():
        # a language added by the user: nothing to measure, which the table (empty) and metadata say
        why = f"no shipped reward-transfer pairs for {language!r} (shipped: {', '.join(transfer_languages())})"
        context.log.warning(f"reward_model_transfer [{language}] not measured: {why}")
        context.add_output_metadata({"measured": False, "why": why})
        return Output(empty_accuracy_table().with_columns(pl.lit(None, pl.String).alias("reward_model")))
    table, scorer_name = compute.call(context, "scoring", transfer_accuracy, reward.scorer_options(), language)
    context.add_output_metadata({"accuracy_by_kind": MetadataValue.md(markdown_table(table))})
    # Output, not the bare frame: a step that opened a Dagster Pipes session (SLURM) must return typed results.
    return Output(table.with_columns(pl.lit(scorer_name).alias("reward_model")))


@asset(
    partitions_def=language_partitions,
    group_name=EVALUATION_GROUP,
    code_version="1",
    kinds={"parquet"},
    pool=MODEL_POOL,
    deps=["dpo_checkpoint"],
)
def euroeval_scores(
    context: AssetExecutionContext, policy: PolicyResource, storage_base: StorageResource, settings: PipelineSettings
) -> pl.DataFrame:
    """EuroEval scores of the base model and of every checkpoint trained so far (LoRA merged first), on
    the reference's datasets for the language, test split, ``settings.euroeval_iterations`` iterations.
    One row per (system, dataset, metric); datasets that could not run have a row with their status and
    why. Without the ``euroeval`` package or its data the asset is skipped, not failed."""
    language = context.partition_key
    adapters = trained_systems(storage_base.base_path, language, storage_base.storage_options)
    run = run_euroeval_systems(
        policy.model_path(),
        language,
        adapters,
        settings.euroeval_datasets,
        num_iterations=settings.euroeval_iterations,
        python=settings.euroeval_python,
    )
    if run.status != "ok":
        context.log.warning(f"EuroEval for {language}: {run.message}")
    context.add_output_metadata(
        {
            "status": run.status,
            "message": run.message,
            "systems": ", ".join(adapters),
            "scores": MetadataValue.md(markdown_table(run.scores.drop("message"), max_rows=50)),
        }
    )
    return run.scores


def _all_partitions(name: str) -> AssetIn:
    # The report shows whatever languages and systems exist so far; missing ones are left out.
    return AssetIn(name, metadata={"allow_missing_partitions": True})


@asset(
    group_name=REPORT_GROUP,
    code_version="1",
    kinds={"parquet"},
    ins={
        "base_evaluation": _all_partitions("base_evaluation"),
        "evaluation": _all_partitions("evaluation"),
        "sft_evaluation": _all_partitions("sft_evaluation"),
        "multilingual_evaluation": _all_partitions("multilingual_evaluation"),
        "multilingual_sft_evaluation": _all_partitions("multilingual_sft_evaluation"),
        "reward_model_transfer": _all_partitions("reward_model_transfer"),
    },
)
def croco_report(
    context: AssetExecutionContext,
    base_evaluation: dict[str, pl.DataFrame],
    evaluation: dict[str, pl.DataFrame],
    sft_evaluation: dict[str, pl.DataFrame],
    multilingual_evaluation: dict[str, pl.DataFrame],
    multilingual_sft_evaluation: dict[str, pl.DataFrame],
    reward_model_transfer: dict[str, pl.DataFrame],
    storage_base: StorageResource,
) -> pl.DataFrame:
    """Per language × system: win rate vs base (SE, LC-WR), structured accuracy, mean reward and
    target-language share, with a bar chart; written beside the data as ``report/``."""

    def stacked(partitions: dict[str, pl.DataFrame]) -> pl.DataFrame:
        return pl.concat(list(partitions.values()), how="vertical_relaxed") if partitions else pl.DataFrame()

    if not base_evaluation:
        raise ValueError("No base_evaluation partition exists yet: materialise croco_job for a language first.")
    table = build_report_table(
        stacked(base_evaluation),
        [
            stacked(evaluation),
            stacked(sft_evaluation),
            stacked(multilingual_evaluation),
            stacked(multilingual_sft_evaluation),
        ],
        stacked(reward_model_transfer) if reward_model_transfer else None,
    )
    with tempfile.TemporaryDirectory(prefix="croco-report-") as scratch:
        files = write_report(table, Path(scratch))
        chart_markdown = png_markdown(files["chart"], "win rates") if files["chart"] else "(no tuned system yet)"
        atomic.publish_directory(
            Path(scratch), storage.join(storage_base.base_path, "report"), storage_base.storage_options
        )
    context.add_output_metadata(
        {
            "report": MetadataValue.md(
                markdown_table(table.with_columns(pl.col(pl.Float64).round(3)), max_rows=100, max_chars=30)
            ),
            "croco_vs_base": MetadataValue.md(
                markdown_table(effect_table(table), max_rows=100, max_chars=60)
                + "\n\nCriteria: "
                + "; ".join(EFFECT_CRITERIA.values())
                + "."
            ),
            "win_rates": MetadataValue.md(chart_markdown),
            "report_folder": MetadataValue.path(storage.join(storage_base.base_path, "report")),
        }
    )
    return table
