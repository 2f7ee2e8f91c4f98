"""Stage 1: the prompt set of each language.

Sources, in order: the user's prompt file (``settings.prompt_file``), the shipped default set, and —
for a language that has neither, or whose user file lacks some prompts — machine translation of the
English set by the ``translator`` model. User-supplied translations always win over machine ones.
"""

import polars as pl
from dagster import AssetExecutionContext, MetadataValue, asset

from croco_pipeline.constants import CROCO_GROUP, MODEL_POOL
from croco_pipeline.core.io.markdown import markdown_table
from croco_pipeline.core.prompts.sets import (
    PromptFileError,
    english_prompts,
    load_prompt_file,
    own_prompts,
    shipped_languages,
)
from croco_pipeline.core.prompts.translation import merge_user_and_machine, translate_prompts
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.model_resources import PolicyResource
from croco_pipeline.resources.settings import PipelineSettings
from croco_pipeline.resources.storage import StorageResource


@asset(
    partitions_def=language_partitions,
    group_name=CROCO_GROUP,
    code_version="3",
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
    options = storage_base.storage_options
    user_file = load_prompt_file(settings.prompt_file, options) if settings.prompt_file else None
    own = own_prompts(language, user_file)
    english = english_prompts(user_file)
    missing = english.filter(~pl.col("prompt_id").is_in(own["prompt_id"].implode())) if own is not None else english
    metadata = {}
    # Translate what a language lacks, unless its prompts are the shipped set (complete by design).
    if language != "en" and not missing.is_empty() and (own is None or language not in shipped_languages()):
        context.log.info(f"Translating {missing.height} English prompts into {language} with {translator.model}")
        with translator.open(seed=settings.seed) as generator:
            machine, refused = translate_prompts(
                generator,
                missing,
                language,
                style=settings.translation_style,
                max_new_tokens=settings.translation_max_new_tokens,
                max_input_tokens=settings.translation_max_input_tokens,
                language_filter=settings.translation_language_filter,
            )
        own = merge_user_and_machine(own, machine)
        metadata = {
            "machine_translated": machine.height,
            "translations_refused": MetadataValue.json(refused.group_by("reason").len().to_dicts()),
            "translator": translator.model,
        }
        if own.is_empty():  # nothing of the user's and no translation accepted
            reasons = ", ".join(f"{row['len']} {row['reason']}" for row in refused.group_by("reason").len().to_dicts())
            raise PromptFileError(
                f"No usable prompts for {language!r}: it has no prompt file rows or shipped set, and every machine "
                f"translation by {translator.model} was refused ({reasons}). Supply translations in a prompt file "
                "(settings.prompt_file) or configure a stronger translator (CROCO_TRANSLATOR_MODEL)."
            )
    if own is None:
        raise PromptFileError(
            f"No prompts for {language!r}: add rows for it to the prompt file (settings.prompt_file)."
        )
    counts = own.group_by("split").len().sort("split")
    context.add_output_metadata(
        {
            "sources": ", ".join(sorted(own["source"].unique())),
            "prompts_per_split": MetadataValue.md(markdown_table(counts)),
            **metadata,
        }
    )
    return own.sort("prompt_id")
