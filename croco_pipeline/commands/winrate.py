"""`croco winrate FILE`: win rate, standard error and length-controlled win rate from judgments.

FILE is JSONL or Parquet with one judgment per row: ``preference`` (1 = the tuned model won, 0.5 = tie,
0 = lost), ``model_length`` and ``reference_length`` (answer lengths in characters) and optionally
``language``. Prints one row per language plus an "all" row, as a table or (``--format json``) as JSON.
Only polars and numpy are imported (no torch, no Dagster), so the command starts fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

VALID_PREFERENCES = (0.0, 0.5, 1.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="judgments as .jsonl or .parquet")
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="output format (default: table)"
    )
    parser.add_argument(
        "--group-by", default="language", metavar="COLUMN", help="column to group by (default: language)"
    )


def _read(path: Path):
    import polars as pl

    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return pl.read_ndjson(path)
    if suffix in (".parquet", ".pq"):
        return pl.read_parquet(path)
    raise ValueError(f"{path}: unknown file type {suffix!r}; expected .jsonl or .parquet")


def _invalid_preference(df) -> str | None:
    """A message naming the first row (1-based, = the JSONL line) whose preference is not 0, 0.5 or 1."""
    if "preference" not in df.columns:
        return f"no 'preference' column (columns: {', '.join(df.columns)})"
    for row, value in enumerate(df["preference"].to_list(), start=1):
        try:
            ok = value is not None and not isinstance(value, bool) and float(value) in VALID_PREFERENCES
        except (TypeError, ValueError):
            ok = False
        if not ok:
            return f"row {row}: preference {value!r} is not one of 0, 0.5, 1"
    return None


def _format_table(records: list[dict], group_col: str) -> str:
    header = [group_col, "n", "wins", "losses", "ties", "WR %", "SE", "LC-WR %"]
    lines = [
        [
            str(r[group_col]),
            str(r["n"]),
            str(r["wins"]),
            str(r["losses"]),
            str(r["ties"]),
            f"{r['win_rate']:.1f}",
            f"{r['standard_error']:.1f}",
            f"{r['lc_win_rate']:.1f}",
        ]
        for r in records
    ]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    render = lambda row: "  ".join(  # noqa: E731 - first column left-aligned, numbers right-aligned
        cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))
    )
    return "\n".join([render(header), render(["-" * w for w in widths]), *map(render, lines)])


def run(args: argparse.Namespace) -> int:
    import polars as pl

    from croco_pipeline.core.evaluation.win_rates import win_rate_table

    path: Path = args.file
    if not path.is_file():
        print(f"croco winrate: {path}: no such file", file=sys.stderr)
        return 2
    try:
        df = _read(path)
    except (ValueError, pl.exceptions.PolarsError, OSError) as exc:
        print(f"croco winrate: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    if df.height == 0:
        print(f"croco winrate: {path} holds no judgments", file=sys.stderr)
        return 2
    problem = _invalid_preference(df)
    if problem is None:
        missing = [c for c in ("model_length", "reference_length") if c not in df.columns]
        if missing:
            problem = f"missing column(s) {', '.join(missing)} (answer lengths in characters)"
    if problem:
        print(f"croco winrate: {path}: {problem}", file=sys.stderr)
        return 2
    df = df.with_columns(pl.col("preference").cast(pl.Float64))

    try:
        table = win_rate_table(df, group_col=args.group_by)
    except ValueError as exc:
        print(f"croco winrate: {path}: {exc}", file=sys.stderr)
        return 2

    keys = [args.group_by, "n", "wins", "losses", "ties", "win_rate", "standard_error", "lc_win_rate"]
    records = [{k: row[k] for k in keys} for row in table.iter_rows(named=True)]
    if args.format == "json":
        print(json.dumps(records, indent=2))
    else:
        print(_format_table(records, args.group_by))
    return 0
