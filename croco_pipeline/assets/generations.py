"""Stage 2: N on-policy samples per training prompt from the policy model."""

import polars as pl
from dagster import AssetExecutionContext, MetadataValue, asset

from croco_pipeline.core.sampling import sample_answers, select_prompts
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.models import PolicyResource
from croco_pipeline.resources.settings import PipelineSettings


@asset(partitions_def=language_partitions, group_name="croco", code_version="1", kinds={"vllm", "parquet"})
def generations(
    context: AssetExecutionContext, prompts: pl.DataFrame, policy: PolicyResource, settings: PipelineSettings
) -> pl.DataFrame:
    """One row per sample: prompt_id, language, sample_idx, prompt, response, token count, finish reason."""
    language = context.partition_key
    train = select_prompts(prompts, "train", settings.max_train_prompts)
    with policy.open(seed=settings.seed) as generator:
        context.log.info(f"Sampling {settings.samples_per_prompt} answers for {train.height} prompts with {generator.backend}")
        samples = sample_answers(
            generator, train, language, settings.sampling(),
            respond_in_language=settings.respond_in_language, model_label=policy.model,
        )
    context.add_output_metadata(
        {
            "prompts": train.height,
            "backend": generator.backend,
            "mean_tokens": MetadataValue.float(float(samples["num_tokens"].mean())),
            "truncated_share": MetadataValue.float(float((samples["finish_reason"] == "length").mean())),
            "empty_responses": int((samples["response"].str.strip_chars() == "").sum()),
        }
    )
    return samples
