"""`croco export`: a pair table as a TRL-ready conversational preference dataset (JSONL or a
Hugging Face dataset folder), for training with other tools."""

from __future__ import annotations

from croco_pipeline import profiles

import argparse
import sys

PAIR_TABLES = ("preference_pairs", "cross_language_pairs")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", choices=PAIR_TABLES, help="the pair table to export")
    parser.add_argument("out", help="a .jsonl file, or a folder with --format hf")
    parser.add_argument("--format", choices=("jsonl", "hf"), default="jsonl",
                        help="jsonl (datasets.load_dataset('json', ...)) or hf (datasets.load_from_disk)")
    parser.add_argument("--where", default=None,
                        help="an SQL condition to select pairs, e.g. \"language IN ('da', 'ga')\"")
    parser.add_argument("--storage", default=None,
                        help="storage base, a folder or s3://bucket/prefix (default: $CROCO_STORAGE or ./croco_data)")
    parser.epilog = "Example: croco export preference_pairs pairs.jsonl --where \"language = 'da'\""


def run(args: argparse.Namespace) -> int:
    from croco_pipeline.core.io import catalog
    from croco_pipeline.core.io import storage
    from croco_pipeline.core.pairs.trl_export import export_pairs

    base = args.storage or profiles.storage_base()
    options = storage.s3_storage_options_from_env() if storage.is_remote(base) else {}
    query = f"SELECT * FROM {args.table}" + (f" WHERE {args.where}" if args.where else "") + " ORDER BY prompt_id, language"
    try:
        pairs = catalog.query(base, query, options)
    except Exception as error:  # catalog and DuckDB errors name the table or the bad condition
        print(f"croco export: {error}", file=sys.stderr)
        return 2
    if pairs.is_empty():
        print(f"croco export: no pairs in {args.table}" + (f" where {args.where}" if args.where else "") + ".", file=sys.stderr)
        return 2
    try:
        target = export_pairs(pairs, args.out, format=args.format)
    except ValueError as error:
        print(f"croco export: {error}", file=sys.stderr)
        return 2
    print(f"{pairs.height} pairs written to {target}")
    return 0
