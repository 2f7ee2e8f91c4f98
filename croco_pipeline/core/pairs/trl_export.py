"""Pair tables as TRL preference datasets (conversational format).

TRL's ``DPOTrainer`` accepts "conversational" preference data: each example has ``prompt`` (the user
turn as a list of ``{"role", "content"}`` messages), ``chosen`` and ``rejected`` (the assistant turn
each, as one-message lists). The trainer applies the model's chat template itself, so the pairs carry
no model-specific formatting. The design (§1.2) samples from the first user turn only, hence one user
message per prompt.

A few id and score columns ride along (prompt_id, languages, scores) so a trained model can be traced
back to its data; TRL drops columns it does not use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import polars as pl

from croco_pipeline.core.io.atomic import replace_directory
from croco_pipeline.core.io.tables import write_table

if TYPE_CHECKING:
    import datasets

# Columns kept next to prompt/chosen/rejected when the pair table has them.
METADATA_COLUMNS = (
    "prompt_id",
    "prompt_language",
    "chosen_language",
    "rejected_language",
    "chosen_score",
    "rejected_score",
)
_NEEDED = ("prompt", "chosen", "rejected")


def conversational_frame(pairs: pl.DataFrame) -> pl.DataFrame:
    """The pair table with prompt/chosen/rejected as one-message conversations, plus metadata columns."""
    missing = [name for name in _NEEDED if name not in pairs.columns]
    if missing:
        raise ValueError(
            f"pair table is missing column(s) {', '.join(missing)}; columns found: "
            f"{', '.join(pairs.columns) or '(none)'}. Build it with croco_pipeline.core.pairs.rule.build_pairs."
        )
    empty = pairs.with_row_index("_row").filter(pl.any_horizontal(pl.col(name).is_null() for name in _NEEDED))
    if empty.height:
        raise ValueError(
            f"{empty.height} pair(s) lack a prompt, chosen or rejected text (first at row {empty['_row'][0]}, "
            "counting from 0); a preference pair needs all three"
        )

    def turn(role: str, column: str) -> pl.Expr:
        message = pl.struct(role=pl.lit(role), content=pl.col(column).cast(pl.String))
        return pl.concat_list(message).alias(column)

    metadata = [name for name in METADATA_COLUMNS if name in pairs.columns]
    return pairs.select(turn("user", "prompt"), turn("assistant", "chosen"), turn("assistant", "rejected"), *metadata)


def to_trl_conversational(pairs: pl.DataFrame) -> datasets.Dataset:
    """A ``datasets.Dataset`` in TRL's conversational preference format (see the module docstring)."""
    import datasets
    import pyarrow as pa

    table = conversational_frame(pairs).to_arrow(compat_level=pl.CompatLevel.oldest())
    # polars hands over large_string/large_list; cast to the plain string/list types that datasets
    # builds from Python lists (features List({"role", "content"})), batch by batch so no single
    # array exceeds the 2 GiB a plain string array can hold.
    message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    schema = pa.schema(
        [pa.field(field.name, message if field.name in _NEEDED else _plain(field.type)) for field in table.schema]
    )
    batches = [batch.cast(schema) for batch in table.to_batches(max_chunksize=8192)]
    return datasets.Dataset(pa.Table.from_batches(batches, schema=schema))


def _plain(arrow_type):  # large_string -> string; numbers stay as they are
    import pyarrow as pa

    return pa.string() if pa.types.is_large_string(arrow_type) else arrow_type


def export_pairs(
    pairs: pl.DataFrame,
    out: str | os.PathLike[str],
    format: Literal["jsonl", "hf"] = "jsonl",
    card: str | None = None,
) -> Path:
    """Write the pairs for TRL and return where they went.

    ``jsonl``: one conversational example per line (``datasets.load_dataset("json", data_files=out)``
    reads it back). ``hf``: a ``Dataset.save_to_disk`` folder (``datasets.load_from_disk(out)``), with
    ``card`` (Markdown, see ``core.io.cards.dataset_card``) as its ``README.md`` when given.
    Both replace an existing output only once the new one is complete.
    """
    target = Path(out)
    if format == "jsonl":
        if target.suffix.lower() not in (".jsonl", ".ndjson"):
            raise ValueError(f"{target}: a JSONL export needs a .jsonl file name")
        write_table(conversational_frame(pairs), target)
        return target
    if format == "hf":
        if target.exists() and not target.is_dir():
            raise ValueError(f"{target}: exists and is not a folder; an hf export is a save_to_disk folder")
        dataset = to_trl_conversational(pairs)

        def build(folder: Path) -> None:
            dataset.save_to_disk(str(folder))
            if card is not None:
                (folder / "README.md").write_text(card)

        return replace_directory(target, build)
    raise ValueError(f"export format {format!r} is not one of jsonl, hf")
