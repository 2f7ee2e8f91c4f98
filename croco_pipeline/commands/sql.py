"""`croco sql "<query>"`: read-only SQL over the pipeline's Parquet data through DuckDB."""

from __future__ import annotations

import argparse
import os
import sys

from croco_pipeline import envs

FORMATS = ("table", "csv", "json", "parquet")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", nargs="?", help="a SELECT statement; omit it to list the tables")
    parser.add_argument(
        "--storage",
        default=None,
        help="storage base, a folder or s3://bucket/prefix (default: $CROCO_STORAGE or ./croco_data)",
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--out", default=None, help="write the result to this file instead of the screen")
    parser.add_argument("--max-rows", type=int, default=50, help="rows shown by --format table (default: 50)")
    parser.epilog = (
        "Tables: prompts, generations, reward_scores, preference_pairs, dpo_checkpoint, evaluation, "
        "evaluation_judgments (and the other pair tables once built). "
        'Example: croco sql "SELECT language, count(*) AS pairs FROM preference_pairs GROUP BY 1"'
    )


def run(args: argparse.Namespace) -> int:
    import polars as pl

    from croco_pipeline.core.io import catalog, storage

    base = args.storage or envs.storage_base()
    options = storage.storage_options_for(base)
    if not storage.is_remote(base) and not os.path.isdir(base):
        print(f"croco sql: no pipeline data at {base}. Run `croco demo` first or pass --storage.", file=sys.stderr)
        return 2
    try:
        connection = catalog.open_catalog(base, options)
        if not args.query:
            print("\n".join(catalog.available_tables(connection)) or "(no tables yet)")
            return 0
        result = catalog.run_read_only(connection, args.query)
    except catalog.ReadOnlyQueryError as error:
        print(f"croco sql: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # duckdb errors name the missing table/column; show them plainly
        tables = ", ".join(catalog.available_tables(connection)) if "connection" in locals() else "?"
        print(f"croco sql: {error}\nTables available: {tables}", file=sys.stderr)
        return 2
    return _emit(result, args, pl)


def _emit(result, args, pl) -> int:
    if args.format == "parquet" and not args.out:
        print("croco sql: --format parquet needs --out FILE.", file=sys.stderr)
        return 2
    if args.format == "table":
        with pl.Config(tbl_rows=args.max_rows, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200):
            text = str(result)
    elif args.format == "csv":
        text = result.write_csv()
    elif args.format == "json":
        text = result.write_json()
    if args.out:
        if args.format == "parquet":
            result.write_parquet(args.out)
        else:
            with open(args.out, "w", encoding="utf-8") as handle:
                handle.write(text)
        print(f"{result.height} rows written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
