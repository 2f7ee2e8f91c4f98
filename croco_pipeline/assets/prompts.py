"""Stage 1: the prompt set of each language (user file, else the shipped default set)."""

import polars as pl
from dagster import AssetExecutionContext, MetadataValue, asset

from croco_pipeline.core.prompts import prompts_for_language
from croco_pipeline.core.storage import s3_storage_options_from_env
from croco_pipeline.core.tables import markdown_table
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.settings import PipelineSettings


@asset(partitions_def=language_partitions, group_name="croco", code_version="1", kinds={"polars", "parquet"})
def prompts(context: AssetExecutionContext, settings: PipelineSettings) -> pl.DataFrame:
    """Instruction prompts in the partition's language; ``prompt_id`` is shared by all translations."""
    language = context.partition_key
    frame = prompts_for_language(language, settings.prompt_file, s3_storage_options_from_env())
    counts = frame.group_by("split").len().sort("split")
    context.add_output_metadata(
        {
            "source": frame["source"][0],
            "prompts_per_split": MetadataValue.md(markdown_table(counts)),
        }
    )
    return frame
