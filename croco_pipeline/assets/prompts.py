"""Stage 1: the prompt set of each language.

The source is the user's (``settings.prompt_file`` or ``settings.prompt_dataset``), else the shipped demo
set; a language the source lacks gets its English prompts machine-translated by the ``translator`` model
(``core.prompts.sources`` has the rules). User-supplied translations always win over machine ones.
"""

import polars as pl
from dagster import AssetExecutionContext, MetadataValue, asset

from croco_pipeline.constants import CROCO_GROUP, MODEL_POOL
from croco_pipeline.core.io.markdown import markdown_table
from croco_pipeline.core.models.specs import load_tokenizer
from croco_pipeline.core.prompts.sets import PromptFileError
from croco_pipeline.core.prompts.sources import (
    PromptSourceSettings,
    language_prompts,
    load_prompt_source,
    prompt_table,
)
from croco_pipeline.core.prompts.translation import conversations_over_limit, merge_user_and_machine, translate_prompts
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.model_resources import PolicyResource
from croco_pipeline.resources.settings import PipelineSettings
from croco_pipeline.resources.storage import StorageResource


@asset(
    partitions_def=language_partitions,
    group_name=CROCO_GROUP,
    code_version="4",
    kinds={"polars", "parquet"},
    pool=MODEL_POOL,
)
def prompts(
    context: AssetExecutionContext,
    settings: PipelineSettings,
    translator: PolicyResource,
    storage_base: StorageResource,
) -> pl.DataFrame:
    """Instruction prompts in the partition's language; ``prompt_id`` is shared by all translations."""
    language = context.partition_key
    source_settings = PromptSourceSettings.of(settings)
    source = load_prompt_source(source_settings, storage_base.base_path, storage_base.storage_options)
    too_long: set[str] = set()
    if source is not None and settings.translation_max_input_tokens:
        # The authors drop a conversation too long to translate from every language, English included.
        english = source.filter(pl.col("language") == "en")
        too_long = conversations_over_limit(
            english,
            load_tokenizer(translator.model),
            settings.translation_style,
            settings.translation_max_input_tokens,
        )
    chosen = language_prompts(language, source, too_long)
    own, metadata = chosen.own, {"source": source_settings.describe(), "too_long_to_translate": len(too_long)}
    if not chosen.to_translate.is_empty():
        context.log.info(
            f"Translating {chosen.to_translate.height} English prompts into {language} with {translator.model}"
        )
        with translator.open(seed=settings.seed) as generator:
            machine, refused = translate_prompts(
                generator,
                chosen.to_translate,
                language,
                style=settings.translation_style,
                max_new_tokens=settings.translation_max_new_tokens,
                max_input_tokens=settings.translation_max_input_tokens,
                language_filter=settings.translation_language_filter,
            )
        own = merge_user_and_machine(own, machine)
        metadata |= {
            "machine_translated": machine.height,
            "translations_refused": MetadataValue.json(refused.group_by("reason").len().to_dicts()),
            "translator": translator.model,
        }
        if own.is_empty():  # nothing of the user's and no translation accepted
            reasons = ", ".join(f"{row['len']} {row['reason']}" for row in refused.group_by("reason").len().to_dicts())
            raise PromptFileError(
                f"No usable prompts for {language!r}: the source has none in it, and every machine translation by "
                f"{translator.model} was refused ({reasons}). Supply translations in the prompt source "
                "(settings.prompt_file or settings.prompt_dataset) or configure a stronger translator "
                "(CROCO_TRANSLATOR_MODEL)."
            )
    table = prompt_table(own)
    counts = table.group_by("split").len().sort("split")
    context.add_output_metadata(
        {
            "sources": ", ".join(sorted(table["source"].unique())),
            "prompts_per_split": MetadataValue.md(markdown_table(counts)),
            **metadata,
        }
    )
    return table
