"""`croco export`: a pair table as a TRL-ready conversational preference dataset (JSONL or a
Hugging Face dataset folder), for training with other tools. An HF folder gets a dataset card
(README.md): languages, row counts, pairing rule and target, policy and reward models, prompt source
and the Dagster runs that made the pairs (from the instance in ``$DAGSTER_HOME``, when there is one)."""

from __future__ import annotations

import argparse
import sys

from croco_pipeline import envs

PAIR_TABLES = ("preference_pairs", "cross_language_pairs")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", choices=PAIR_TABLES, help="the pair table to export")
    parser.add_argument("out", help="a .jsonl file, or a folder with --format hf")
    parser.add_argument(
        "--format",
        choices=("jsonl", "hf"),
        default="jsonl",
        help="jsonl (datasets.load_dataset('json', ...)) or hf (datasets.load_from_disk)",
    )
    parser.add_argument(
        "--where", default=None, help="an SQL condition to select pairs, e.g. \"language IN ('da', 'ga')\""
    )
    parser.add_argument(
        "--storage",
        default=None,
        help="storage base, a folder or s3://bucket/prefix (default: $CROCO_STORAGE or ./croco_data)",
    )
    parser.epilog = "Example: croco export preference_pairs pairs.jsonl --where \"language = 'da'\""


def run(args: argparse.Namespace) -> int:
    from croco_pipeline.core.io import catalog, storage
    from croco_pipeline.core.pairs.trl_export import export_pairs

    base = args.storage or envs.storage_base()
    options = storage.storage_options_for(base)
    query = (
        f"SELECT * FROM {args.table}"
        + (f" WHERE {args.where}" if args.where else "")
        + " ORDER BY prompt_id, language"
    )
    try:
        pairs = catalog.query(base, query, options)
    except Exception as error:  # catalog and DuckDB errors name the table or the bad condition
        print(f"croco export: {error}", file=sys.stderr)
        return 2
    if pairs.is_empty():
        print(
            f"croco export: no pairs in {args.table}" + (f" where {args.where}" if args.where else "") + ".",
            file=sys.stderr,
        )
        return 2
    card = dataset_card_for(pairs, args.table, base, options, args.where) if args.format == "hf" else None
    try:
        target = export_pairs(pairs, args.out, format=args.format, card=card)
    except ValueError as error:
        print(f"croco export: {error}", file=sys.stderr)
        return 2
    print(f"{pairs.height} pairs written to {target}")
    return 0


def _distinct(base: str, options: dict, sql: str) -> list[str]:
    """The non-null values of a one-column query, or [] when the table is not there (e.g. pairs built
    outside the pipeline with `croco pairs`)."""
    from croco_pipeline.core.io import catalog

    try:
        frame = catalog.query(base, sql, options)
    except Exception:  # a missing table or column only leaves that line of the card unknown
        return []
    return sorted(str(value) for value in frame.to_series().drop_nulls().unique().to_list())


def _dagster_provenance(table: str, languages: list[str]) -> tuple[dict[str, str], dict]:
    """Run id of the latest materialisation of ``table`` per partition (or of the whole table), and the
    metadata of the newest one, from the Dagster instance in ``$DAGSTER_HOME`` (none: nothing known)."""
    if not envs.dagster_home():
        return {}, {}
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

    runs: dict[str, str] = {}
    newest = None
    with DagsterInstance.get() as instance:
        partitions = languages if table == "preference_pairs" else [None]
        for partition in partitions:
            records_filter = AssetRecordsFilter(AssetKey(table), asset_partitions=[partition] if partition else None)
            records = instance.fetch_materializations(records_filter, limit=1).records
            if not records:
                continue
            record = records[0]
            runs[partition or "(all languages)"] = record.run_id
            if newest is None or record.storage_id > newest.storage_id:
                newest = record
    metadata = {}
    if newest is not None:
        materialization = newest.event_log_entry.asset_materialization
        metadata = {key: value.value for key, value in materialization.metadata.items()}
    return runs, metadata


def dataset_card_for(pairs, table: str, base: str, options: dict, where: str | None) -> str:
    """The dataset card of an export of ``pairs`` (rows of ``table``)."""
    from croco_pipeline.core.io.cards import dataset_card

    counts = {str(row[0]): int(row[1]) for row in pairs.group_by("language").len().iter_rows()}
    languages = ", ".join(f"'{code}'" for code in sorted(counts))
    runs, metadata = _dagster_provenance(table, sorted(counts))
    if table == "preference_pairs":
        prompt_source = "in-language: each pair's prompt and both answers are in the pair's language"
    else:
        rule = metadata.get("prompt_source", "unknown (no Dagster record)")
        prompt_source = (
            f"cross-language: the prompt is shown in the language of the {rule} answer"
            if rule in ("chosen", "rejected")
            else f"cross-language: {rule}"
        )
    scored = f"FROM reward_scores WHERE language IN ({languages})"
    return dataset_card(
        table=table,
        languages=counts,
        target=sorted(pairs["target"].drop_nulls().unique().to_list()) if "target" in pairs.columns else [],
        policy_models=_distinct(base, options, f"SELECT DISTINCT model {scored}"),
        reward_models=_distinct(base, options, f"SELECT DISTINCT reward_model {scored}"),
        prompt_sets=_distinct(base, options, f"SELECT DISTINCT source FROM prompts WHERE language IN ({languages})"),
        prompt_source=prompt_source,
        dagster_runs=runs,
        where=where,
    )
