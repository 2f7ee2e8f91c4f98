"""`croco winrate FILE`: win rate, standard error and length-controlled win rate from judgments.

FILE is JSONL or Parquet with one judgment per row, in one of two forms:

- raw judge outputs: ``judge_output`` (the judge's text), ``swapped`` (true when the evaluated model's
  answer was shown as output 2), ``model_length`` and ``reference_length`` (characters). Verdicts are
  parsed as the paper parses them (``core.evaluation.win_rates.parse_verdict``); judgments without one
  are excluded from the statistics and counted as ``unparseable``;
- preferences: ``preference`` (1 = the tuned model won, 0.5 = tie, 0 = lost) and the two lengths.

Optional columns: ``language`` (one row per language) and ``subcategory`` (statistics per subcategory
inside each language). ``--tie-handling`` says what a tie counts: win, half (default, the paper's) or
loss. Prints one row per language, an "all" row (every judgment pooled) and an "average" row (the
unweighted mean over languages, as the paper reports it), as a table or (``--format json``) as JSON.
The evaluation assets use the same parser and statistics. Only polars and numpy are imported (no
torch, no Dagster), so the command starts fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

VALID_PREFERENCES = (0.0, 0.5, 1.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="judgments as .jsonl or .parquet")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    parser.add_argument(
        "--group-by", default="language", metavar="COLUMN", help="column to group by (default: language)"
    )
    parser.add_argument(
        "--tie-handling",
        choices=("win", "half", "loss"),
        default="half",
        help="what a tie counts towards the win rate (default: half)",
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


LENGTH_COLUMNS = ("model_length", "reference_length")
OUTCOME_OF_PREFERENCE = {1.0: "win", 0.5: "tie", 0.0: "loss"}


def _outcomes(df):
    """``df`` with an ``outcome`` column (win/loss/tie, null when unparseable), or a message saying what
    is wrong with it."""
    import polars as pl

    from croco_pipeline.core.evaluation.win_rates import parse_verdict, verdict_outcomes

    missing = [c for c in LENGTH_COLUMNS if c not in df.columns]
    if "judge_output" in df.columns:
        missing = ["swapped", *missing] if "swapped" not in df.columns else missing
        if missing:
            return None, f"missing column(s) {', '.join(missing)} (raw judge outputs need swapped and both lengths)"
        swapped = df["swapped"].to_list()
        for row, value in enumerate(swapped, start=1):
            if not isinstance(value, bool):
                return None, f"row {row}: swapped {value!r} is not true or false"
        outcomes = verdict_outcomes([parse_verdict(text or "") for text in df["judge_output"]], swapped)
        return df.with_columns(pl.Series("outcome", outcomes, dtype=pl.String)), None
    problem = _invalid_preference(df)
    if problem is None and missing:
        problem = f"missing column(s) {', '.join(missing)} (answer lengths in characters)"
    if problem:
        return None, problem
    outcomes = [OUTCOME_OF_PREFERENCE[float(value)] for value in df["preference"]]
    return df.with_columns(pl.Series("outcome", outcomes, dtype=pl.String)), None


def _json_record(record: dict) -> dict:
    """A report record as printed: ``n`` (judgments with a verdict, as before) beside the new counts."""
    printed = {**record, "n": record["n_judged"]}
    if "subcategories" in record:
        printed["subcategories"] = {name: _json_record(sub) for name, sub in record["subcategories"].items()}
    return printed


def _format_table(records: list[dict], group_col: str) -> str:
    header = [group_col, "n", "wins", "losses", "ties", "WR %", "SE", "LC-WR %", "unparseable"]

    def cells(label: str, r: dict) -> list[str]:
        number = lambda key: "-" if r.get(key) is None else str(r[key])  # noqa: E731
        rate = lambda key: "-" if r.get(key) is None else f"{r[key]:.1f}"  # noqa: E731
        return [
            label,
            number("n_judged"),
            number("wins"),
            number("losses"),
            number("ties"),
            rate("win_rate"),
            rate("standard_error"),
            rate("lc_win_rate"),
            number("unparseable"),
        ]

    lines = []
    for r in records:
        lines.append(cells(str(r[group_col]), r))
        for name, sub in r.get("subcategories", {}).items():
            lines.append(cells(f"{r[group_col]}/{name}", sub))
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    render = lambda row: "  ".join(  # noqa: E731 - first column left-aligned, numbers right-aligned
        cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))
    )
    return "\n".join([render(header), render(["-" * w for w in widths]), *map(render, lines)])


def run(args: argparse.Namespace) -> int:
    import polars as pl

    from croco_pipeline.core.evaluation.win_rates import judgment_report

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
    df, problem = _outcomes(df)
    if problem:
        print(f"croco winrate: {path}: {problem}", file=sys.stderr)
        return 2
    try:
        records = judgment_report(df, group_col=args.group_by, tie_handling=args.tie_handling)
    except ValueError as exc:
        print(f"croco winrate: {path}: {exc}", file=sys.stderr)
        return 2

    if args.format == "json":
        print(json.dumps([_json_record(r) for r in records], indent=2))
    else:
        print(_format_table(records, args.group_by))
    return 0
