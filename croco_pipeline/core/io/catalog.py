"""A DuckDB catalogue over the pipeline's Parquet files: one view per table, local or ``s3://``.

    SELECT language, count(*) FROM preference_pairs GROUP BY language

Views are created for every table folder that holds Parquet files, so the catalogue always reflects
what is on storage now. Queries are read-only: statements that write, attach or change settings
are refused.
"""

from __future__ import annotations

import re

import duckdb
import polars as pl

from croco_pipeline.core.io import storage

# Table folders under the storage base, in pipeline order. Unknown folders are ignored.
TABLES = [
    "prompts",
    "generations",
    "reward_scores",
    "preference_pairs",
    "unpaired_prompts",
    "sft_records",
    "cross_language_pairs",
    "cross_language_unpaired",
    "cross_language_sft_records",
    "dpo_checkpoint",
    "evaluation",
    "evaluation_judgments",
    "base_answers",
    "base_evaluation",
    "sft_checkpoint",
    "sft_evaluation",
    "sft_evaluation_judgments",
    "multilingual_dpo_checkpoint",
    "multilingual_evaluation",
    "multilingual_evaluation_judgments",
    "multilingual_sft_checkpoint",
    "multilingual_sft_evaluation",
    "multilingual_sft_evaluation_judgments",
    "reward_model_transfer",
    "euroeval_scores",
    "croco_report",
    "croco_rounds_report",
]
# Later rounds' tables (core.rounds): round<k>_<table>, for the per-language tables a round has.
ROUND_TABLE = re.compile(r"^round[1-9][0-9]*_([a-z_]+)$")

READ_ONLY_STATEMENTS = {"SELECT", "EXPLAIN"}


class ReadOnlyQueryError(ValueError):
    pass


def open_catalog(base: str, storage_options: dict | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per table found under ``base``."""
    connection = duckdb.connect(":memory:")
    if storage.is_remote(base):
        # DuckDB's httpfs extension cannot always be downloaded; s3fs serves the files instead.
        connection.register_filesystem(storage.filesystem(base, storage_options))
    fs = storage.filesystem(base, storage_options)
    for table in TABLES + _round_tables(fs, base):
        pattern = storage.join(base, table, "**", "*.parquet")
        if not fs.glob(pattern):
            continue
        escaped = pattern.replace("'", "''")
        connection.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{escaped}', "
            "hive_partitioning = false, union_by_name = true)"
        )
    return connection


def _round_tables(fs, base: str) -> list[str]:
    """The ``round<k>_<table>`` folders under ``base`` (round order, then pipeline order); the multilingual
    chain's ``round<k>_multilingual_generations`` and ``…_reward_scores`` count as their tables."""
    try:
        names = [entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(base, detail=False)]
    except FileNotFoundError:
        return []
    found = [name for name in names if _round_table(name) is not None]
    return sorted(found, key=lambda name: (int(name[5 : name.index("_")]), _round_table(name)))


def _round_table(name: str) -> int | None:
    """The pipeline position of a later round's table (None: not one)."""
    match = ROUND_TABLE.match(name)
    if not match:
        return None
    table = match.group(1)
    if table not in TABLES and table.startswith("multilingual_"):
        table = table.removeprefix("multilingual_")
    return TABLES.index(table) if table in TABLES else None


def available_tables(connection: duckdb.DuckDBPyConnection) -> list[str]:
    return [row[0] for row in connection.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()]


def check_read_only(connection: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse anything but SELECT/EXPLAIN (COPY, CREATE, ATTACH, INSTALL, SET, … are refused)."""
    try:
        statements = connection.extract_statements(query)
    except duckdb.Error as error:
        raise ReadOnlyQueryError(f"Could not parse the query: {error}") from error
    if not statements:
        raise ReadOnlyQueryError("The query is empty.")
    for statement in statements:
        kind = statement.type.name
        if kind not in READ_ONLY_STATEMENTS:
            raise ReadOnlyQueryError(
                f"`croco sql` is read-only: {kind} statements are refused. Use SELECT (or EXPLAIN); "
                "to save a result, pass --out FILE."
            )


def run_read_only(connection: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    """Check that ``sql`` only reads, run it, and return the last statement's result."""
    check_read_only(connection, sql)
    relation = connection.sql(sql)  # runs every statement; a relation for the last one
    return relation.pl() if relation is not None else pl.DataFrame()


def query(base: str, sql: str, storage_options: dict | None = None) -> pl.DataFrame:
    """Run a read-only query over the catalogue of ``base`` and return the result as a polars DataFrame."""
    return run_read_only(open_catalog(base, storage_options), sql)
