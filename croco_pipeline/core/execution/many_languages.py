"""One step for many languages: the work of several language partitions as one table, so that one model
load serves them all and the batches hold every language's prompts.

A Dagster run over a range of language partitions (a single-run backfill, ``BackfillPolicy.single_run()``)
hands a model stage a table per language. :func:`combine` stacks them with a work key that is unique
across languages (``prompt_id`` is shared by a prompt's translations), the stage computes the stacked
table in chunks of that key as usual, and :func:`split` gives each language its rows back, in the order a
run of that language alone writes them. Rows depend only on their own prompt (generation seeds each prompt
from the run seed and the prompt text), so they equal the per-language runs' rows.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

WORK_KEY = "_work_key"


def stage_label(languages: list[str] | tuple[str, ...]) -> str:
    """The staging name of a many-language step (``cy+da+ga+nl``): its chunks resume only for the same set."""
    return "+".join(sorted(languages))


def combine(frames: Mapping[str, pl.DataFrame], key: str = "prompt_id") -> pl.DataFrame:
    """The languages' tables stacked in language order, with ``language`` set and a unique ``WORK_KEY``."""
    if not frames:
        raise ValueError("no language to combine")
    stacked = [
        frame.with_columns(pl.lit(language, dtype=pl.String).alias("language"))
        for language, frame in sorted(frames.items())
    ]
    combined = pl.concat(stacked, how="diagonal_relaxed")
    return combined.with_columns((pl.col("language") + pl.lit("\x1f") + pl.col(key).cast(pl.String)).alias(WORK_KEY))


def split(frame: pl.DataFrame, languages: list[str] | tuple[str, ...]) -> dict[str, pl.DataFrame]:
    """Each language's rows of a combined result, without the work key (a language with none gets an empty
    table)."""
    clean = frame.drop(WORK_KEY, strict=False)
    return {language: clean.filter(pl.col("language") == language) for language in languages}
