"""Prompt datasets: a Hugging Face dataset id, a local dataset folder or a local data file as the prompt source.

The authors' input is JSONL of conversations: each row has ``messages`` (role/content), and the prompt is
the first user turn. A dataset here may hold such conversations or plain prompts (a ``prompt`` column);
``columns`` maps croco's names (``prompt_id``, ``language``, ``prompt``, ``messages``, ``split``) onto the
dataset's own. Rows without a language take ``default_language`` (an English-only source); rows without an
id are numbered by their position in the split, which is stable for a given dataset revision.

A dataset is loaded once and staged as Parquet under the storage base
(``<base>/_staging/prompt_dataset/<fingerprint>/data.parquet``, the fingerprint covering the source and
the mapping), so every language partition reads the same rows, on any node, without loading it again.

For the length filter of machine translation, each row also keeps ``message_texts``: the text of every
message of the conversation (the authors drop a conversation when any of its messages is too long to
translate, English included).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from croco_pipeline.core.io import atomic, storage
from croco_pipeline.core.io.hashing import config_hash
from croco_pipeline.core.languages.codes import get_language
from croco_pipeline.core.prompts.sets import PromptFileError, first_user_turn, validate_prompt_rows

CROCO_COLUMNS = ("prompt_id", "language", "prompt", "messages", "split")
DATA_FILE_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class PromptDataset:
    """Where the prompts come from and how its columns read (settings ``prompt_dataset*``)."""

    source: str  # a hub id, a folder written by save_to_disk, a folder of data files, or one data file
    config: str | None = None
    split: str = "train"
    columns: tuple[tuple[str, str], ...] = ()  # (croco name, dataset column)
    default_language: str = "en"

    def column(self, name: str) -> str:
        return dict(self.columns).get(name, name)

    def fingerprint(self) -> str:
        """What the staged copy depends on: the settings, and for a local source its files' sizes and times
        (an edited file is loaded anew). A Hub dataset is staged once per id; a new storage base reloads it."""
        return config_hash({**asdict(self), "local_files": _local_file_stamps(self.source)})


def prompt_dataset(
    source: str,
    *,
    config: str | None = None,
    split: str = "train",
    columns: dict[str, str] | None = None,
    default_language: str = "en",
) -> PromptDataset:
    """A :class:`PromptDataset`, its column mapping checked (only croco's names may be mapped)."""
    unknown = sorted(set(columns or {}) - set(CROCO_COLUMNS))
    if unknown:
        raise PromptFileError(
            f"settings.prompt_dataset_columns maps {', '.join(unknown)}, which croco does not read; map any of "
            f"{', '.join(CROCO_COLUMNS)} to the dataset's column names."
        )
    get_language(default_language)
    return PromptDataset(source, config, split, tuple(sorted((columns or {}).items())), default_language)


def staged_path(base: str, dataset: PromptDataset) -> str:
    return storage.join(base, "_staging", "prompt_dataset", dataset.fingerprint(), "data.parquet")


def load_staged_prompts(base: str, dataset: PromptDataset, storage_options: dict | None = None) -> pl.DataFrame:
    """The dataset's prompt table, from its staged Parquet file; loaded and staged first if not there yet."""
    path = staged_path(base, dataset)
    if storage.exists(path, storage_options):
        return storage.read_parquet(path, storage_options)
    frame = load_prompt_dataset(dataset)
    atomic.write_parquet(frame, path, storage_options)
    return frame


def load_prompt_dataset(dataset: PromptDataset) -> pl.DataFrame:
    """Load ``dataset`` with the ``datasets`` library and turn it into a prompt table (prompt_id, language,
    split, prompt, source, message_texts)."""
    rows = _load_rows(dataset)
    if not rows:
        raise PromptFileError(f"{_describe(dataset)}: the split {dataset.split!r} has no rows.")
    messages_column, prompt_column = dataset.column("messages"), dataset.column("prompt")
    has_messages = messages_column in rows[0]
    if not has_messages and prompt_column not in rows[0]:
        raise PromptFileError(
            f"{_describe(dataset)}: no {prompt_column!r} or {messages_column!r} column (it has "
            f"{', '.join(rows[0])}). Map yours with settings.prompt_dataset_columns, e.g. "
            '{"prompt": "instruction"} or {"messages": "conversation"}.'
        )
    table, texts = [], []
    for index, row in enumerate(rows):
        where = f"{_describe(dataset)}, row {index}"
        if has_messages:
            messages = _messages(row[messages_column], where)
            prompt = first_user_turn(messages, where)
            message_texts = [message["content"] for message in messages]
        else:
            prompt = row[prompt_column]
            message_texts = [prompt]
        table.append(
            {
                "prompt_id": row.get(dataset.column("prompt_id"), f"{index:07d}"),
                "language": row.get(dataset.column("language")) or dataset.default_language,
                "split": row.get(dataset.column("split")) or "train",
                "prompt": prompt,
                "_line": index,
            }
        )
        texts.append([str(text) for text in message_texts])
    languages = {str(row["language"]) for row in table}
    if len(languages) > 1 and dataset.column("prompt_id") not in rows[0]:
        raise PromptFileError(
            f"{_describe(dataset)}: rows in {len(languages)} languages but no prompt_id column to link each "
            'prompt to its translations. Map it with settings.prompt_dataset_columns, e.g. {"prompt_id": "id"}.'
        )
    frame = validate_prompt_rows(table, source_name=_describe(dataset))
    # validate_prompt_rows sorts by language and id; the texts follow the same rows
    order = {(row["language"], str(row["prompt_id"])): i for i, row in enumerate(table)}
    frame = frame.with_columns(
        pl.Series(
            "message_texts",
            [texts[order[key]] for key in zip(frame["language"], frame["prompt_id"])],
            dtype=pl.List(pl.String),
        )
    )
    return frame.with_columns(pl.lit(_describe(dataset)).alias("source"))


def _messages(value, where: str) -> list[dict]:
    if isinstance(value, str):  # conversations stored as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise PromptFileError(f"{where}: messages is not a list of {{role, content}} ({error}).") from None
    if not isinstance(value, list) or not all(isinstance(m, dict) and "role" in m for m in value):
        raise PromptFileError(f"{where}: messages must be a list of {{role, content}} objects, got {value!r:.120}.")
    return value


def _local_file_stamps(source: str) -> list[tuple[str, int, int]]:
    path = Path(source).expanduser()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
    return [
        (str(p.relative_to(path) if path.is_dir() else p.name), p.stat().st_size, p.stat().st_mtime_ns) for p in files
    ]


def _describe(dataset: PromptDataset) -> str:
    config = f" ({dataset.config})" if dataset.config else ""
    return f"prompt dataset {dataset.source}{config}, split {dataset.split}"


def _load_rows(dataset: PromptDataset) -> list[dict]:
    """Every row of the split as a dict: from a save_to_disk folder, a local data file or folder, or the Hub."""
    import datasets

    local = Path(dataset.source).expanduser()
    try:
        if local.is_dir() and ((local / "dataset_dict.json").is_file() or (local / "state.json").is_file()):
            loaded = datasets.load_from_disk(str(local))
            if isinstance(loaded, datasets.DatasetDict):
                if dataset.split not in loaded:
                    raise PromptFileError(
                        f"{_describe(dataset)}: no such split; the folder has {', '.join(loaded)} "
                        "(settings.prompt_dataset_split)."
                    )
                loaded = loaded[dataset.split]
        elif local.is_file():
            file_format = DATA_FILE_FORMATS.get(local.suffix.lower())
            if file_format is None:
                raise PromptFileError(
                    f"{local}: unsupported data file type {local.suffix!r}; use {', '.join(DATA_FILE_FORMATS)}."
                )
            loaded = datasets.load_dataset(file_format, data_files={dataset.split: str(local)}, split=dataset.split)
        else:
            loaded = datasets.load_dataset(
                str(local) if local.is_dir() else dataset.source, dataset.config, split=dataset.split
            )
    except PromptFileError:
        raise
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as error:
        raise PromptFileError(
            f"Cannot load {_describe(dataset)}: {str(error).rstrip('.')}. Check settings.prompt_dataset "
            "(CROCO_PROMPT_DATASET): a Hugging Face dataset id reachable from here (or in the local cache), a "
            "folder written by Dataset.save_to_disk, or a local JSONL/JSON/Parquet/CSV file; and "
            "settings.prompt_dataset_split."
        ) from error
    return loaded.to_list()
