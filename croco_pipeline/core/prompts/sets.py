"""Prompt sets: the shipped default set, user-supplied files, and how a prompt is put to the model.

A prompt set is a table with one row per (prompt_id, language): ``prompt_id`` is the *conceptual*
prompt shared by all translations of the same English prompt, so later stages join on ids, never on
text. ``split`` is ``train`` (used for self-generation and pairs) or ``heldout`` (used for evaluation).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl

from croco_pipeline.core.io import shipped_data as shipped
from croco_pipeline.core.io.storage import read_parquet
from croco_pipeline.core.languages.codes import get_language

PROMPT_COLUMNS = ["prompt_id", "language", "split", "prompt", "source"]
SPLITS = ("train", "heldout")
SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")

RESPOND_IN_LANGUAGE = " Please respond in {language} and nothing else."


class PromptFileError(ValueError):
    """A prompt file that cannot be used; the message names the file, the row and what to fix."""


def shipped_languages() -> list[str]:
    """Languages the shipped default prompt set covers (one JSONL file per language)."""
    return shipped.shipped_languages("prompts")


def load_shipped_prompts(language: str) -> pl.DataFrame:
    """The default prompt set for one language, written for this project (48 train + 16 held-out)."""
    get_language(language)
    text = shipped.shipped_text("prompts", language)
    if text is None:
        raise PromptFileError(
            f"The shipped prompt set has no {language!r} prompts (it covers {', '.join(shipped_languages())}). "
            "Supply your own file with the prompts asset's `prompt_file` setting."
        )
    rows = _parse_jsonl(text, source_name=f"shipped {language}.jsonl")
    for row in rows:
        row.setdefault("language", language)
    frame = validate_prompt_rows(rows, source_name=f"shipped {language}.jsonl")
    return frame.with_columns(pl.lit("shipped").alias("source"))


def load_prompt_file(
    path: str, storage_options: dict | None = None, *, default_language: str | None = None, language_hint: str = ""
) -> pl.DataFrame:
    """Read a user prompt file (JSONL, CSV or Parquet; local path or ``s3://``) and validate it.

    Required columns: ``prompt_id``, ``language``, ``prompt`` (or ``messages``, a conversation whose first
    user turn is the prompt); optional ``split`` (default ``train``).
    ``default_language`` is the language of rows without one (no column, or an empty cell);
    ``language_hint`` is added to the error when a row has neither (e.g. which option gives it).
    """
    suffix = Path(path.split("?")[0]).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise PromptFileError(
            f"{path}: unsupported prompt file type {suffix or '(none)'!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}."
        )
    try:
        if suffix == ".parquet":
            rows = read_parquet(path, storage_options).to_dicts()
        else:
            text = _read_text(path, storage_options)
            rows = _parse_csv(text, path) if suffix == ".csv" else _parse_jsonl(text, path)
    except FileNotFoundError as error:
        raise PromptFileError(
            f"Prompt file not found: {path}. Check the path or the prompts asset's `prompt_file` setting."
        ) from error
    if default_language:
        for row in rows:
            if row.get("language") in (None, ""):
                row["language"] = default_language
    frame = validate_prompt_rows(rows, source_name=path, language_hint=language_hint)
    return frame.with_columns(pl.lit(str(path)).alias("source"))


def own_prompts(language: str, source: pl.DataFrame | None) -> pl.DataFrame | None:
    """A language's own prompts: its rows in the user's source when there is one (a prompt file or
    dataset replaces the shipped sets), else the shipped set; None when there are none (the pipeline then
    machine-translates the English prompts, see ``core.prompts.translation``)."""
    get_language(language)
    if source is None:
        return load_shipped_prompts(language) if language in shipped_languages() else None
    own = source.filter(pl.col("language") == language)
    return None if own.is_empty() else own


def english_prompts(source: pl.DataFrame | None) -> pl.DataFrame:
    """The English prompts that translations start from: the source's, else the shipped set."""
    if source is None:
        return load_shipped_prompts("en")
    return source.filter(pl.col("language") == "en")


def first_user_turn(messages: list[dict], where: str) -> str:
    """The prompt of a conversation (``messages``): the content of its first user message, as the
    authors' generation script takes it."""
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content") or "")
    raise PromptFileError(f"{where}: the conversation has no user message.")


def format_user_prompt(prompt: str, language: str, respond_in_language: bool) -> str:
    """The user turn sent to the policy; optionally with the reference's respond-in-{Language} suffix."""
    if not respond_in_language:
        return prompt
    return prompt + RESPOND_IN_LANGUAGE.format(language=get_language(language).name)


def _read_text(path: str, storage_options: dict | None) -> str:
    if "://" in path:
        import fsspec

        with fsspec.open(path, "r", encoding="utf-8", **(storage_options or {})) as handle:
            return handle.read()
    return Path(path).expanduser().read_text(encoding="utf-8")


def _parse_jsonl(text: str, source_name: str) -> list[dict]:
    return [dict(row, _line=line) for line, row in shipped.parse_jsonl(text, source_name, PromptFileError)]


def _parse_csv(text: str, source_name: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    # line numbers count the header as line 1, as a spreadsheet shows them
    return [dict(row, _line=index) for index, row in enumerate(reader, start=2)]


def validate_prompt_rows(rows: list[dict], source_name: str, language_hint: str = "") -> pl.DataFrame:
    """A prompt table (prompt_id, language, split, prompt) from rows, each checked; a row with
    ``messages`` instead of ``prompt`` gives its first user turn. Errors name the source and the row."""
    if not rows:
        raise PromptFileError(f"{source_name}: the prompt file is empty.")
    required = ["prompt_id", "language", "prompt"]
    for index, row in enumerate(rows, start=1):
        where = f"line {row['_line']}" if "_line" in row else f"row {index}"
        if row.get("prompt") in (None, "") and isinstance(row.get("messages"), list):
            row["prompt"] = first_user_turn(row["messages"], f"{source_name}, {where}")
        missing = [column for column in required if row.get(column) in (None, "")]
        if missing:
            hint = f" {language_hint}" if language_hint and "language" in missing else ""
            raise PromptFileError(
                f"{source_name}, {where}: missing {', '.join(missing)} (required columns: {', '.join(required)})."
                + hint
            )
        try:
            get_language(str(row["language"]))
        except ValueError as error:
            raise PromptFileError(f"{source_name}, {where}: {error}") from error
        split = row.get("split") or "train"
        if split not in SPLITS:
            raise PromptFileError(f"{source_name}, {where}: split must be one of {', '.join(SPLITS)}, got {split!r}.")
        row["split"] = split
    frame = pl.DataFrame(
        {
            "prompt_id": [str(row["prompt_id"]) for row in rows],
            "language": [str(row["language"]) for row in rows],
            "split": [row["split"] for row in rows],
            "prompt": [str(row["prompt"]) for row in rows],
        }
    )
    duplicates = frame.filter(pl.struct("prompt_id", "language").is_duplicated())
    if not duplicates.is_empty():
        examples = ", ".join(
            f"{r['prompt_id']}/{r['language']}"
            for r in duplicates.select("prompt_id", "language").unique(maintain_order=True).head(5).to_dicts()
        )
        raise PromptFileError(
            f"{source_name}: duplicate prompt ids within a language ({examples}); "
            "each (prompt_id, language) must be unique."
        )
    return frame.sort("language", "prompt_id")
