"""Held-out prompts for the open-ended evaluation (docs/design.md §1.6).

The paper judges answers to multilingual Arena-Hard (``CohereLabs/m-ArenaHard-v2.1``). Where the Hugging
Face Hub is reachable, :func:`load_arena_hard` loads it with ``datasets.load_dataset``; offline (laptops,
CI) the evaluation uses the held-out split of the shipped prompt set, or any local file in the
m-ArenaHard format (:func:`load_arena_file`; a three-prompt sample for en/da/fr ships in
``croco_pipeline/data/arena_sample/``).

The m-ArenaHard format, as the dataset card of v2.0 documents it and as public loaders of v2.1 use it:
one config per language named by its ISO 639-1 code (``load_dataset(name, "da", split="test")``), one
``test`` split, columns ``question_id`` (shared by all translations of a prompt), ``category``,
``subcategory``, ``prompt`` and ``language``. Assumption, not checked against v2.1 here (no network):
the Welsh, Irish, Maltese and Galician configs added in v2.1 follow the same naming; if one does not,
fix :data:`ARENA_CONFIGS`.

Every loader returns the pipeline's prompt table (``prompt_id``, ``language``, ``split`` = "heldout",
``prompt``, ``source``) with ``question_id`` as the conceptual ``prompt_id``; m-ArenaHard prompts read
through :func:`load_heldout_prompts` also keep their ``subcategory`` (the paper reports win rates per
subcategory).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import polars as pl

from croco_pipeline.core.io import shipped_data as shipped
from croco_pipeline.core.languages.codes import KNOWN_LANGUAGES, get_language
from croco_pipeline.core.prompts.sets import PROMPT_COLUMNS, load_shipped_prompts

ARENA_DATASET = "CohereLabs/m-ArenaHard-v2.1"
ARENA_SPLIT = "test"
# The paper's open-ended evaluation languages.
ARENA_LANGUAGES = ("en", "it", "es", "fr", "de", "nl", "da", "gl", "cy", "mt", "ga")
# ISO 639-1 code -> dataset config name (the same, by assumption; see the module docstring).
ARENA_CONFIGS = {code: code for code in ARENA_LANGUAGES}
ARENA_REQUIRED_COLUMNS = ("question_id", "prompt")
ARENA_COLUMNS = ("question_id", "category", "subcategory", "prompt", "language")

HELDOUT_SOURCES = ("shipped", "arena", "auto")


class HeldoutError(ValueError):
    """A held-out prompt file or setting that cannot be used; the message says what to fix."""


class ArenaUnavailableError(RuntimeError):
    """m-ArenaHard could not be loaded (no network, no access, or the language is missing)."""


@dataclass
class HeldoutSet:
    """Held-out prompts and where they came from. ``note`` explains a fallback, else None."""

    prompts: pl.DataFrame
    source: str
    note: str | None = None


def shipped_heldout_prompts(language: str) -> pl.DataFrame:
    """The held-out split of the shipped prompt set (16 prompts per language)."""
    prompts = load_shipped_prompts(language).filter(pl.col("split") == "heldout")
    if prompts.is_empty():
        raise HeldoutError(f"The shipped prompt set has no held-out prompts for {language!r}.")
    return prompts.select(PROMPT_COLUMNS)


def arena_sample_path(language: str) -> Path:
    """The shipped m-ArenaHard-format sample file for ``language`` (en, da and fr exist)."""
    get_language(language)
    resource = resources.files("croco_pipeline") / "data" / "arena_sample" / f"{language}.jsonl"
    if not resource.is_file():
        folder = resources.files("croco_pipeline") / "data" / "arena_sample"
        shipped = sorted(e.name.removesuffix(".jsonl") for e in folder.iterdir() if e.name.endswith(".jsonl"))
        raise HeldoutError(f"No shipped m-ArenaHard sample for {language!r}; samples exist for {', '.join(shipped)}.")
    return Path(str(resource))


def load_arena_file(
    path: str | Path, language: str, limit: int | None = None, with_subcategory: bool = False
) -> pl.DataFrame:
    """Read a local file in the m-ArenaHard format (JSONL or Parquet) as held-out prompts of ``language``.

    Rows whose ``language`` column names another language are left out (the column may hold the ISO
    code or the English name); a file without that column is taken to be all in ``language``.
    ``with_subcategory`` adds the ``subcategory`` column (null where a row has none).
    """
    get_language(language)
    path = Path(path)
    rows = _read_rows(path)
    if not rows:
        raise HeldoutError(f"{path}: the file holds no prompts.")
    missing = [column for column in ARENA_REQUIRED_COLUMNS if column not in rows[0]]
    if missing:
        raise HeldoutError(
            f"{path}: missing column(s) {', '.join(missing)}; the m-ArenaHard format has {', '.join(ARENA_COLUMNS)}."
        )
    kept = [row for row in rows if row.get("language") in (None, "") or _as_code(row["language"]) == language]
    if not kept:
        found = sorted({str(row.get("language")) for row in rows})
        raise HeldoutError(f"{path}: no prompts in language {language!r} (the file holds {', '.join(found)}).")
    return _to_prompt_table(
        kept, language, source=str(path), where=str(path), limit=limit, with_subcategory=with_subcategory
    )


def load_arena_hard(
    language: str,
    dataset: str = ARENA_DATASET,
    limit: int | None = None,
    revision: str | None = None,
    with_subcategory: bool = False,
) -> pl.DataFrame:
    """Load one language of m-ArenaHard from the Hugging Face Hub (or its local cache).

    Raises :class:`ArenaUnavailableError`, saying what to do instead, when it cannot be loaded.
    """
    get_language(language)
    if language not in ARENA_CONFIGS:
        raise ArenaUnavailableError(
            f"{dataset} has no {language!r} config in this pipeline's table (it covers {', '.join(ARENA_LANGUAGES)})."
        )
    import datasets

    try:
        table = datasets.load_dataset(dataset, ARENA_CONFIGS[language], split=ARENA_SPLIT, revision=revision)
    except Exception as error:  # network, authentication, missing config: all mean "not available"
        raise ArenaUnavailableError(
            f"{dataset} ({language!r}) could not be loaded: {type(error).__name__}: {error}. "
            "Offline, use the shipped held-out prompts (source 'shipped') or a local file in the "
            "m-ArenaHard format (source = its path)."
        ) from error
    rows = [dict(row) for row in table]
    missing = [column for column in ARENA_REQUIRED_COLUMNS if column not in table.column_names]
    if missing:
        raise HeldoutError(f"{dataset} ({language!r}) lacks column(s) {missing}; it has {table.column_names}.")
    return _to_prompt_table(
        rows, language, source=dataset, where=f"{dataset} ({language})", limit=limit, with_subcategory=with_subcategory
    )


def load_heldout_prompts(
    language: str, source: str = "shipped", limit: int | None = None, prompts: pl.DataFrame | None = None
) -> HeldoutSet:
    """Held-out prompts from ``source``: "shipped" (the held-out split of the language's prompt table
    ``prompts``: the shipped set's, a prompt source's or their machine translation; without a table, the
    shipped set's), "arena" (m-ArenaHard, an error when unreachable), "auto" (m-ArenaHard, else the
    held-out split with a note saying why) or the path of a local file in the m-ArenaHard format."""
    if source == "shipped":
        return HeldoutSet(_limit(_heldout_split(language, prompts), limit), "shipped")
    if source == "arena":
        return HeldoutSet(load_arena_hard(language, limit=limit, with_subcategory=True), ARENA_DATASET)
    if source == "auto":
        try:
            return HeldoutSet(load_arena_hard(language, limit=limit, with_subcategory=True), ARENA_DATASET)
        except ArenaUnavailableError as error:
            note = f"{error} Falling back to the held-out split of the prompts."
            return HeldoutSet(_limit(_heldout_split(language, prompts), limit), "shipped", note)
    if Path(source).suffix.lower() in (".jsonl", ".parquet") or Path(source).exists():
        return HeldoutSet(load_arena_file(source, language, limit=limit, with_subcategory=True), source)
    raise HeldoutError(
        f"Unknown held-out source {source!r}: use one of {', '.join(HELDOUT_SOURCES)} or the path of a "
        ".jsonl/.parquet file in the m-ArenaHard format."
    )


# ----------------------------------------------------------------------------- internals


def _heldout_split(language: str, prompts: pl.DataFrame | None) -> pl.DataFrame:
    if prompts is None:
        return shipped_heldout_prompts(language)
    heldout = prompts.filter(pl.col("split") == "heldout").select(PROMPT_COLUMNS).sort("prompt_id")
    if heldout.is_empty():
        raise HeldoutError(
            f"The prompts of {language!r} have no held-out split to evaluate on. Add rows with split 'heldout' to "
            "the prompt source, or set settings.heldout_source to 'arena' or to an m-ArenaHard-format file."
        )
    return heldout


def _as_code(value: object) -> str:
    """An ISO 639-1 code from a code or an English language name (as a dataset may spell either)."""
    text = str(value).strip()
    if text.lower() in KNOWN_LANGUAGES:
        return text.lower()
    by_name = {lang.name.lower(): code for code, lang in KNOWN_LANGUAGES.items()}
    return by_name.get(text.lower(), text)


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise HeldoutError(f"Held-out prompt file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pl.read_parquet(path).to_dicts()
    if suffix != ".jsonl":
        raise HeldoutError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .jsonl or .parquet.")
    return [row for _, row in shipped.parse_jsonl(path.read_text(encoding="utf-8"), str(path), HeldoutError)]


def _to_prompt_table(
    rows: list[dict], language: str, source: str, where: str, limit: int | None, with_subcategory: bool = False
) -> pl.DataFrame:
    seen: set[str] = set()
    out = []
    for index, row in enumerate(rows, start=1):
        question_id, prompt = row.get("question_id"), row.get("prompt")
        if question_id in (None, "") or not isinstance(prompt, str) or not prompt.strip():
            raise HeldoutError(f"{where}, prompt {index}: question_id and a non-empty prompt are required.")
        if str(question_id) in seen:
            raise HeldoutError(f"{where}: duplicate question_id {question_id!r}.")
        seen.add(str(question_id))
        out.append(
            {
                "prompt_id": str(question_id),
                "language": language,
                "split": "heldout",
                "prompt": prompt,
                "source": source,
                "subcategory": str(row["subcategory"]) if row.get("subcategory") not in (None, "") else None,
            }
        )
    columns = [*PROMPT_COLUMNS, "subcategory"] if with_subcategory else PROMPT_COLUMNS
    return _limit(pl.DataFrame(out, schema={column: pl.String for column in columns}).select(columns), limit)


def _limit(frame: pl.DataFrame, limit: int | None) -> pl.DataFrame:
    if limit is None:
        return frame
    if limit < 1:
        raise HeldoutError(f"limit must be at least 1 (or None for all prompts), got {limit}")
    return frame.head(limit)
