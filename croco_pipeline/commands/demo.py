"""`croco demo`: the whole pipeline on the embedded laptop configuration, through Dagster.

Runs the ``croco_job`` once per language into a persistent Dagster instance inside the project
folder (``.dagster_home``), so ``dagster dev`` afterwards shows the runs, partitions and metadata.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

DEFAULT_LANGUAGES = "da,fr,es,ga"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--languages",
        default=DEFAULT_LANGUAGES,
        help=f"comma-separated ISO 639-1 codes (default: {DEFAULT_LANGUAGES}; ga is low-resource)",
    )
    parser.add_argument("--profile", default=None, help="configuration profile (default: $CROCO_PROFILE or embedded)")
    parser.add_argument(
        "--dagster-home",
        default=None,
        help="Dagster instance folder (default: $DAGSTER_HOME or ./.dagster_home)",
    )
    parser.add_argument("--storage", default=None, help="storage base (default: $CROCO_STORAGE or ./croco_data)")
    parser.add_argument("--quiet", action="store_true", help="only print the final table")


def run(args: argparse.Namespace) -> int:
    from croco_pipeline.languages import UnknownLanguageError, get_language

    languages = [code.strip() for code in args.languages.split(",") if code.strip()]
    try:
        for code in languages:
            get_language(code)
    except UnknownLanguageError as error:
        print(f"croco demo: {error}", file=sys.stderr)
        return 2
    home = Path(args.dagster_home or os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    if args.storage:
        os.environ["CROCO_STORAGE"] = args.storage
    if args.profile:
        os.environ["CROCO_PROFILE"] = args.profile

    from dagster import DagsterInstance

    from croco_pipeline.definitions import build_definitions
    from croco_pipeline.partitions import language_partitions

    definitions = build_definitions()
    job = definitions.resolve_job_def("croco_job")
    instance = DagsterInstance.get()
    instance.add_dynamic_partitions(language_partitions.name, languages)
    quiet_logs = {"loggers": {"console": {"config": {"log_level": "WARNING" if args.quiet else "INFO"}}}}

    stage_seconds: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    for language in languages:
        print(f"== {language} ({get_language(language).name}) ==", flush=True)
        result = job.execute_in_process(
            partition_key=language, instance=instance, run_config=quiet_logs, raise_on_error=False
        )
        if not result.success:
            print(f"croco demo: the run for {language!r} failed (run id {result.run_id}); "
                  "open `dagster dev` to see its logs.", file=sys.stderr)
            return 1
        stage_seconds[language] = _step_seconds(instance, result.run_id)
    total = time.perf_counter() - started

    _print_results(languages, stage_seconds, total)
    print(
        f"\nData: {os.environ.get('CROCO_STORAGE', './croco_data')}   Dagster instance: {home}\n"
        "Open the UI with:  DAGSTER_HOME=.dagster_home dagster dev -w workspace.yaml\n"
        "Query the pairs:   croco sql \"SELECT language, count(*) FROM preference_pairs GROUP BY 1\""
    )
    return 0


def _step_seconds(instance, run_id: str) -> dict[str, float]:
    return {
        stat.step_key: (stat.end_time or 0) - (stat.start_time or 0)
        for stat in instance.get_run_step_stats(run_id)
    }


def _print_results(languages: list[str], stage_seconds: dict, total: float) -> None:
    import polars as pl

    from croco_pipeline.core import catalog, storage

    base = os.environ.get("CROCO_STORAGE") or storage.DEFAULT_BASE
    options = storage.s3_storage_options_from_env() if storage.is_remote(base) else {}
    codes = ", ".join(f"'{code}'" for code in languages)
    table = catalog.query(
        base,
        f"""
        SELECT e.language,
               (SELECT count(*) FROM preference_pairs p WHERE p.language = e.language) AS pairs,
               round(e.win_rate, 1) AS win_rate,
               round(e.standard_error, 1) AS se,
               round(e.lc_win_rate, 1) AS lc_win_rate,
               round(e.base_mean_reward, 3) AS base_reward,
               round(e.tuned_mean_reward, 3) AS tuned_reward,
               round(100 * e.base_language_share, 1) AS base_in_lang_pct,
               round(100 * e.tuned_language_share, 1) AS tuned_in_lang_pct
        FROM evaluation e WHERE e.language IN ({codes}) ORDER BY e.language
        """,
        options,
    )
    print("\nCroCo demo: base vs DPO-tuned, per language (win rate of tuned over base, %)")
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(table)
    times = pl.DataFrame(
        [{"language": language, **{step: round(seconds, 1) for step, seconds in steps.items()}}
         for language, steps in stage_seconds.items()]
    )
    print("\nSeconds per stage")
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(times)
    print(f"Total pipeline time: {total:.0f} s")
