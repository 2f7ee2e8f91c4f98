"""`croco demo`: the whole pipeline on the embedded laptop configuration, through Dagster.

Runs the ``croco_job`` once per language into a persistent Dagster instance inside the project
folder (``.dagster_home``), so ``dagster dev`` afterwards shows the runs, partitions and metadata.
"""

from __future__ import annotations

from croco_pipeline import profiles
from croco_pipeline.constants import CROCO_JOB

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
    parser.add_argument(
        "--full",
        action="store_true",
        help="also train and evaluate the SFT baseline and the multilingual CroCo checkpoint (slower)",
    )


def run(args: argparse.Namespace) -> int:
    from croco_pipeline.core.languages.codes import UnknownLanguageError, get_language

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
    # Every step runs in this process: start the policy engine once instead of once per step.
    os.environ.setdefault("CROCO_KEEP_MODELS_LOADED", "1")
    _write_instance_config(home)

    from dagster import DagsterInstance

    from croco_pipeline.definitions import build_definitions
    from croco_pipeline.partitions import language_partitions
    from croco_pipeline.core.models.lifetime import close_shared_generators

    definitions = build_definitions()
    instance = DagsterInstance.get()
    instance.add_dynamic_partitions(language_partitions.name, languages)
    quiet_logs = {"loggers": {"console": {"config": {"log_level": "WARNING" if args.quiet else "INFO"}}}}

    plan = [(CROCO_JOB, language) for language in languages]
    if args.full:
        plan += [("baselines_job", language) for language in languages]
        plan += [("cross_language_job", None)]
        plan += [("multilingual_evaluation_job", language) for language in languages]
    plan += [("report_job", None)]

    stage_seconds: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    try:
        for job_name, language in plan:
            label = f"{job_name} [{language}]" if language else job_name
            print(f"== {label} ==", flush=True)
            result = definitions.resolve_job_def(job_name).execute_in_process(
                partition_key=language, instance=instance, run_config=quiet_logs, raise_on_error=False
            )
            if not result.success:
                print(f"croco demo: {label} failed (run id {result.run_id}); "
                      "open the UI (make ui) to see its logs.", file=sys.stderr)
                return 1
            stage_seconds[label] = _step_seconds(instance, result.run_id)
    finally:
        close_shared_generators()
    total = time.perf_counter() - started

    _print_results(stage_seconds, total)
    print(
        f"\nData: {profiles.storage_base()}   Dagster instance: {home}\n"
        "Report: <data>/report/report.md and win_rates.png\n"
        "Open the UI with:  make ui   (or DAGSTER_HOME=.dagster_home dagster dev -w workspace.yaml)\n"
        "Query the pairs:   croco sql \"SELECT language, count(*) FROM preference_pairs GROUP BY 1\""
    )
    return 0


def _write_instance_config(home: Path) -> None:
    """A dagster.yaml for the demo's instance: no telemetry, and one model-loading step at a time."""
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(
            "telemetry:\n  enabled: false\n"
            "concurrency:\n  pools:\n    default_limit: 1\n"
        )


def _step_seconds(instance, run_id: str) -> dict[str, float]:
    return {
        stat.step_key: (stat.end_time or 0) - (stat.start_time or 0)
        for stat in instance.get_run_step_stats(run_id)
    }


def _print_results(stage_seconds: dict, total: float) -> None:
    import polars as pl

    from croco_pipeline.core.io import catalog

    from croco_pipeline.core.io import storage

    base = profiles.storage_base()
    options = storage.s3_storage_options_from_env() if storage.is_remote(base) else {}
    table = catalog.query(
        base,
        """
        SELECT r.language, r.system,
               (SELECT count(*) FROM preference_pairs p WHERE p.language = r.language) AS pairs,
               round(r.win_rate, 1) AS win_rate, round(r.standard_error, 1) AS se,
               round(r.lc_win_rate, 1) AS lc_win_rate, round(100 * r.mc_accuracy, 1) AS mc_acc_pct,
               round(r.mean_reward, 3) AS mean_reward, round(100 * r.language_share, 1) AS in_language_pct,
               round(100 * r.rm_transfer_accuracy, 1) AS rm_transfer_pct
        FROM croco_report r ORDER BY r.language
        """,
        options,
    )
    table_format = dict(tbl_rows=-1, tbl_cols=-1, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True,
                        tbl_width_chars=200)
    print("\nCroCo demo: each system against the base model, per language (win rates in %)")
    with pl.Config(**table_format):
        print(table)
    times = pl.DataFrame(
        [{"run": label, **{step: round(seconds, 1) for step, seconds in steps.items()}}
         for label, steps in stage_seconds.items()],
        infer_schema_length=None,
    )
    print("\nSeconds per step")
    with pl.Config(**table_format):
        print(times)
    print(f"Total pipeline time: {total:.0f} s")
