"""Where a language's prompts come from, decided the same way by the ``prompts`` asset and ``croco plan``.

- A user source (``settings.prompt_file`` or ``settings.prompt_dataset``, one of them) replaces the shipped
  sets: a language takes its own rows from it, and the English prompts it lacks are machine-translated
  (an English-only source is translated into every other language).
- Without one, each language takes the shipped demo set (48 training and 16 held-out prompts), where
  ``allow_demo_prompts`` permits it (the ``paper`` profile does not), and a language without a shipped set
  is translated from the shipped English set.
- Conversations too long to translate (``conversations_over_limit``) are dropped from every language,
  English included, as the authors did.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from croco_pipeline.core.prompts.datasets import load_staged_prompts, prompt_dataset
from croco_pipeline.core.prompts.sets import (
    PROMPT_COLUMNS,
    PromptFileError,
    english_prompts,
    load_prompt_file,
    own_prompts,
)

DEMO_PROMPTS_REFUSED = (
    "This profile does not train on the shipped demo prompts (48 per language: a handful of optimizer steps at "
    "the paper's batch size). Set settings.prompt_dataset (CROCO_PROMPT_DATASET) to your instruction data: a "
    "Hugging Face dataset id, a folder written by Dataset.save_to_disk, or a JSONL file of conversations "
    "(`messages`), English-only or with translations; or settings.prompt_file (CROCO_PROMPT_FILE). To try the "
    "profile on the demo prompts anyway, set settings.allow_demo_prompts to true."
)


class DemoPromptsRefused(PromptFileError):
    """The profile does not train on the shipped demo prompts and no prompt source is set."""


@dataclass(frozen=True)
class PromptSourceSettings:
    """The settings that choose the prompt source (fields of the pipeline settings of the same names)."""

    prompt_file: str | None = None
    prompt_dataset: str | None = None
    prompt_dataset_config: str | None = None
    prompt_dataset_split: str = "train"
    prompt_dataset_columns: dict[str, str] | None = None
    prompt_dataset_language: str = "en"
    allow_demo_prompts: bool = True

    @classmethod
    def of(cls, settings) -> "PromptSourceSettings":
        """The prompt-source fields of any settings object that has them (e.g. the Dagster resource)."""
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})

    def describe(self) -> str:
        if self.prompt_dataset:
            return f"dataset {self.prompt_dataset} (split {self.prompt_dataset_split})"
        return f"file {self.prompt_file}" if self.prompt_file else "the shipped demo prompts"


def load_prompt_source(
    settings: PromptSourceSettings, storage_base: str, storage_options: dict | None = None
) -> pl.DataFrame | None:
    """The user's prompt table (None: the shipped sets). A dataset is staged as Parquet under the storage
    base the first time, and read from there afterwards."""
    if settings.prompt_file and settings.prompt_dataset:
        raise PromptFileError(
            "Both settings.prompt_file and settings.prompt_dataset are set; choose one prompt source."
        )
    if settings.prompt_dataset:
        dataset = prompt_dataset(
            settings.prompt_dataset,
            config=settings.prompt_dataset_config,
            split=settings.prompt_dataset_split,
            columns=settings.prompt_dataset_columns,
            default_language=settings.prompt_dataset_language,
        )
        return load_staged_prompts(storage_base, dataset, storage_options)
    if settings.prompt_file:
        return load_prompt_file(settings.prompt_file, storage_options)
    if not settings.allow_demo_prompts:
        raise DemoPromptsRefused(DEMO_PROMPTS_REFUSED)
    return None


@dataclass(frozen=True)
class LanguagePrompts:
    """A language's prompts before translation: its own rows, and the English rows it lacks."""

    own: pl.DataFrame | None
    to_translate: pl.DataFrame  # English rows to machine-translate (empty: none)
    dropped_too_long: int  # conceptual prompts left out because a message is too long to translate

    def counts(self) -> dict[str, int]:
        """Prompts per split, translations counted as if every one succeeds (an upper bound)."""
        counts: dict[str, int] = {}
        for frame in (self.own, self.to_translate):
            if frame is not None:
                for split, number in frame.group_by("split").len().iter_rows():
                    counts[split] = counts.get(split, 0) + number
        return counts


def language_prompts(language: str, source: pl.DataFrame | None, too_long: set[str] = frozenset()) -> LanguagePrompts:
    """What ``language`` takes from ``source`` (see the module doc) and what must be translated."""
    own = own_prompts(language, source)
    english = english_prompts(source)
    dropped = len(too_long & set(english["prompt_id"]))
    if too_long:
        keep = ~pl.col("prompt_id").is_in(sorted(too_long))
        own = own.filter(keep) if own is not None else None
        english = english.filter(keep)
    # The shipped sets are complete by design: nothing to translate for a language that has one.
    complete = source is None and own is not None
    if language == "en" or complete:
        missing = english.head(0)
    elif own is None:
        missing = english
    else:
        missing = english.filter(~pl.col("prompt_id").is_in(own["prompt_id"].implode()))
    if own is None and missing.is_empty():
        where = "the prompt source" if source is not None else "the shipped sets"
        raise PromptFileError(
            f"No prompts for {language!r}: {where} has no rows in it and no English prompts to translate. Add "
            "rows for it, or English rows, to settings.prompt_file or settings.prompt_dataset."
        )
    return LanguagePrompts(own=own, to_translate=missing, dropped_too_long=dropped)


def prompt_table(frame: pl.DataFrame) -> pl.DataFrame:
    """The ``prompts`` asset's columns, in prompt_id order."""
    return frame.select(PROMPT_COLUMNS).sort("prompt_id")
