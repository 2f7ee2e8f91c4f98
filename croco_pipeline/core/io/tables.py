"""Reading and writing tables in the format their file extension names (the ``croco`` commands' files).

- ``.parquet`` / ``.pq``: Parquet. Reading is lazy (``scan_parquet``), so only the columns and rows a
  step needs are loaded: pairing reads ids and rewards of every row but texts of two rows per pool.
- ``.jsonl`` / ``.ndjson``: one JSON object per line. Read eagerly (parsed once) with polars' fast
  reader; if that fails, the file is read again line by line with Python's ``json`` to either accept
  ``NaN``/``Infinity`` (which Python's ``json.dumps`` writes but strict JSON, and polars, reject) or
  name the first broken line.

Remote paths (``s3://…`` and other ``scheme://`` URLs) go to polars as they are; polars takes the
credentials from the environment unless ``storage_options`` says otherwise, and puts an object in one
request. Local writes go through :func:`croco_pipeline.core.io.atomic.staged_file`, so a failed or
interrupted write never leaves a partial file behind.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any, Literal

import polars as pl

from croco_pipeline.core.io.atomic import staged_file
from croco_pipeline.core.io.storage import is_remote, local_path

TableFormat = Literal["parquet", "jsonl"]

EXTENSIONS: dict[str, TableFormat] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


class TableFileError(ValueError):
    """A table file cannot be read or written: unknown extension, missing file, broken line …"""


def table_format(path: str | os.PathLike[str]) -> TableFormat:
    """``"parquet"`` or ``"jsonl"``, from the file's extension (case-insensitive)."""
    suffix = Path(str(path).split("?", 1)[0]).suffix.lower()
    if suffix not in EXTENSIONS:
        raise TableFileError(
            f"{path}: unknown file type {suffix or '(no extension)'!r}; use one of {', '.join(EXTENSIONS)}"
        )
    return EXTENSIONS[suffix]


def read_table(
    path: str | os.PathLike[str],
    *,
    schema_overrides: dict[str, pl.DataType] | None = None,
    only_overridden: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> pl.DataFrame | pl.LazyFrame:
    """A LazyFrame over Parquet, or a DataFrame of a JSONL file.

    Parquet may also be a folder of Parquet files (Hive-style ``language=da/`` folders become a column)
    or a glob such as ``rewards/*/part-*.parquet``. ``schema_overrides`` gives the types of known JSONL
    columns (so ids such as ``1`` and ``"p1"`` in one file both read as text); Parquet carries its own.
    ``only_overridden``: read just those JSONL columns (faster, and other keys may hold anything).
    """
    path = local_path(path)
    if not is_remote(path) and Path(path).is_dir():
        return pl.scan_parquet(path)  # a partitioned dataset, as the pipeline's assets write them
    fmt = table_format(path)
    if not is_remote(path):
        if glob.has_magic(str(path)):
            if not glob.glob(str(path)):
                raise TableFileError(f"{path}: no file matches")
        elif not Path(path).is_file():
            raise TableFileError(f"{path}: no such file")
    if fmt == "parquet":
        return pl.scan_parquet(path, storage_options=storage_options)
    if glob.has_magic(str(path)):
        raise TableFileError(f"{path}: JSONL is read from one file; give its name, not a pattern")
    return read_jsonl(
        path, schema_overrides=schema_overrides, only_overridden=only_overridden, storage_options=storage_options
    )


def read_jsonl(
    path: str | os.PathLike[str],
    *,
    schema_overrides: dict[str, pl.DataType] | None = None,
    only_overridden: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> pl.DataFrame:
    """A JSONL file as a DataFrame; a broken line raises ``TableFileError`` naming its line number.

    With ``only_overridden``, and when the first object has every overridden key, just those columns
    are read, with no type inference (the fast path for big scored files).
    """
    path = local_path(path)
    overrides = schema_overrides or {}
    schema = None
    if overrides and not is_remote(path):
        # Only override columns the file has: polars fails on an override for an absent column, and
        # a missing column is better reported by whoever needs it, with the list of columns found.
        present = _first_object_keys(Path(path))
        if only_overridden and present.issuperset(overrides):
            schema = overrides
        overrides = {name: dtype for name, dtype in overrides.items() if name in present}
    try:
        if schema is not None:
            return pl.read_ndjson(path, schema=schema)
        return pl.read_ndjson(path, schema_overrides=overrides or None, storage_options=storage_options)
    except pl.exceptions.PolarsError as fast_error:
        if is_remote(path):
            raise TableFileError(f"{path}: cannot read as JSONL: {_one_line(fast_error)}") from fast_error
        return _read_jsonl_with_python(Path(path), overrides, fast_error)


def write_table(
    frame: pl.DataFrame,
    path: str | os.PathLike[str],
    *,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Write ``frame`` as Parquet or JSONL (by extension); atomically for local paths."""
    path = local_path(path)
    fmt = table_format(path)
    if is_remote(path):  # an object store replaces an object in one put: no partial object to avoid
        _write(frame, str(path), fmt, storage_options)
        return
    with staged_file(path) as temporary:
        _write(frame, str(temporary), fmt, None)


def _write(frame: pl.DataFrame, path: str, fmt: TableFormat, storage_options: dict[str, Any] | None) -> None:
    if fmt == "parquet":
        frame.write_parquet(path, storage_options=storage_options)
    else:
        # The temporary file ends in .tmp, hence check_extension=False.
        frame.lazy().sink_ndjson(path, storage_options=storage_options, check_extension=False)


def _first_object_keys(path: Path) -> set[str]:
    """Keys of the first non-empty line's JSON object (empty if that line is not an object)."""
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                try:
                    first = json.loads(line)
                except ValueError:
                    return set()  # the full read reports the broken line
                return set(first) if isinstance(first, dict) else set()
    return set()


def _read_jsonl_with_python(path: Path, overrides: dict[str, pl.DataType], fast_error: Exception) -> pl.DataFrame:
    """The slow, forgiving reader: accepts NaN/Infinity, and names the first line that is not JSON."""
    rows: list[dict[str, Any]] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except UnicodeDecodeError as error:
                raise TableFileError(f"{path}: line {number} is not UTF-8 text ({error.reason})") from None
            except json.JSONDecodeError as error:
                raise TableFileError(
                    f"{path}: line {number} is not valid JSON ({error.msg}, column {error.colno})"
                ) from None
            if not isinstance(row, dict):
                raise TableFileError(f"{path}: line {number} is not a JSON object but {type(row).__name__}")
            rows.append(row)
    try:
        return pl.DataFrame(rows, schema_overrides=overrides or None, infer_schema_length=None)
    except (pl.exceptions.PolarsError, TypeError, ValueError) as error:
        raise TableFileError(
            f"{path}: cannot read as a table ({_one_line(error)}; polars said: {_one_line(fast_error)})"
        ) from error


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
