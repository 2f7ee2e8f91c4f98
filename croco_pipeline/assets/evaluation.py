"""Stage 6: the tuned model against its base on held-out prompts, judged by the reward scorer."""

import polars as pl
from dagster import AssetExecutionContext, AssetOut, MetadataValue, Output, multi_asset

from croco_pipeline.core import storage
from croco_pipeline.core.evaluation import reward_judgments, summarize_language
from croco_pipeline.core.sampling import add_rewards, sample_answers, select_prompts
from croco_pipeline.core.tables import markdown_table
from croco_pipeline.partitions import language_partitions
from croco_pipeline.sensors import MODEL_POOL
from croco_pipeline.resources.models import PolicyResource, RewardResource
from croco_pipeline.resources.settings import PipelineSettings
from croco_pipeline.resources.storage import StorageResource


@multi_asset(
    partitions_def=language_partitions,
    group_name="croco",
    pool=MODEL_POOL,
    outs={
        "evaluation": AssetOut(code_version="1", kinds={"parquet"}, description="Win rate of tuned over base, per language."),
        "evaluation_judgments": AssetOut(code_version="1", kinds={"parquet"}, description="Every judged answer pair."),
    },
)
def evaluation(
    context: AssetExecutionContext,
    prompts: pl.DataFrame,
    dpo_checkpoint: pl.DataFrame,
    policy: PolicyResource,
    reward: RewardResource,
    storage_base: StorageResource,
    settings: PipelineSettings,
):
    """Base and tuned answers to the held-out prompts (same sampling), scored by the reward scorer;
    the win rate of tuned over base (ties 0.5) with its standard error, mean rewards and the share of
    answers in the target language."""
    language = context.partition_key
    heldout = select_prompts(prompts, "heldout", settings.max_eval_prompts)
    adapter = storage.local_copy(dpo_checkpoint["checkpoint_path"][0], storage_base.storage_options)
    sampling = settings.eval_sampling()
    common = dict(respond_in_language=settings.respond_in_language, model_label=policy.model)
    with policy.open(enable_lora=True, seed=sampling.seed) as generator:
        base = sample_answers(generator, heldout, language, sampling, **common)
        tuned = sample_answers(generator, heldout, language, sampling, adapter_path=str(adapter), **common)
    with reward.open() as scorer:
        judgments = reward_judgments(add_rewards(base, scorer), add_rewards(tuned, scorer))
    summary = pl.DataFrame([summarize_language(language, judgments)])
    yield Output(
        summary,
        output_name="evaluation",
        metadata={
            "win_rate": MetadataValue.float(summary["win_rate"][0]),
            "standard_error": MetadataValue.float(summary["standard_error"][0]),
            "summary": MetadataValue.md(markdown_table(summary)),
        },
    )
    yield Output(judgments, output_name="evaluation_judgments")
