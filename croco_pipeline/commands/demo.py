"""`croco demo`: the whole pipeline on the embedded laptop configuration, through Dagster.

Runs the ``croco_job`` once per language into a persistent Dagster instance inside the project
folder (``.dagster_home``), so ``make ui`` afterwards shows the runs, partitions and metadata.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from croco_pipeline import envs
from croco_pipeline.constants import (
    BASELINES_JOB,
    CROCO_JOB,
    CROSS_LANGUAGE_JOB,
    MULTILINGUAL_EVALUATION_JOB,
    REPORT_JOB,
)

# Languages the embedded SmolLM2 answers in only part of the time (share of its held-out answers by the
# independent identifier: da about 0.3, cy 0.5, mt 0.2, no 0.4-0.55), so there is room to improve; Irish (0.72-0.81)
# left none. Maltese and Norwegian sample 32 answers a prompt (the embedded profile); benchmarks/README.md.
DEFAULT_LANGUAGES = "da,cy,mt,no"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--languages",
        default=DEFAULT_LANGUAGES,
        help=f"comma-separated ISO 639-1 codes (default: {DEFAULT_LANGUAGES}: cy and mt are low-resource; "
        "these are languages the embedded model mostly does not answer in yet, so CroCo has something to improve)",
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
        "--verbose",
        action="store_true",
        help="show the libraries' and Dagster's INFO logs on the console (they always go to the log file)",
    )
    parser.add_argument("--log-file", default=None, help="full log (default: <dagster home>/logs/demo-<time>.log)")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="the run's seed (sampling, judging order, training; default: the profile's, 0 for embedded)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a pipeline setting for this run, as in resources.settings.config (repeatable), e.g. "
        "max_train_prompts=32 or training_epochs=1; `croco plan --set ...` shows what it does to training",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="materialise every asset again. By default a demo resumes: an asset whose data are already in "
        "storage for the same configuration (profile, models, storage, seed, code version) is skipped, so a "
        "demo stopped half-way goes on where it stopped",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds of CroCo (default 1): round k samples from round k-1's checkpoint, scores, pairs and trains "
        "again; the settings round_init and round_reference say from what and against what",
    )
    parser.add_argument(
        "--round-policy",
        choices=["language", "multilingual", "both"],
        default="language",
        help="with --rounds 2 or more, which checkpoint a later round samples from: each language's own "
        "(language, default), the one multilingual checkpoint trained on every language's cross-language pairs "
        "(multilingual: merged once, then every language sampled in one run, each model loaded once), or both "
        "chains side by side",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="also train and evaluate the SFT baseline and the multilingual CroCo checkpoint (slower)",
    )


def run(args: argparse.Namespace) -> int:
    from croco_pipeline.core.languages.codes import UnknownLanguageError, get_language
    from croco_pipeline.core.settings import RunSettings, parse_assignments

    languages = [code.strip() for code in args.languages.split(",") if code.strip()]
    try:
        for code in languages:
            get_language(code)
        args.settings = parse_assignments(RunSettings, args.set)
    except (UnknownLanguageError, ValueError) as error:
        print(f"croco demo: {error}", file=sys.stderr)
        return 2
    if args.seed is not None:
        args.settings["seed"] = args.seed
    if args.rounds < 1:
        print(f"croco demo: --rounds must be 1 or more, got {args.rounds}", file=sys.stderr)
        return 2
    home = Path(args.dagster_home or envs.dagster_home() or ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    if args.storage:
        os.environ["CROCO_STORAGE"] = args.storage
    if args.profile:
        os.environ["CROCO_PROFILE"] = args.profile
    # Every step runs in this process: start the policy engine once instead of once per step.
    os.environ.setdefault("CROCO_KEEP_MODELS_LOADED", "1")
    _write_instance_config(home)
    # the process id too: two demos started in the same second never share a log file
    default_log = home / "logs" / f"demo-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
    log_path = Path(args.log_file or default_log).resolve()

    from croco_pipeline.commands.demo_console import DemoConsole

    with DemoConsole(log_path, verbose=args.verbose) as console:
        console.print(f"croco demo: languages {', '.join(languages)}; full log: {log_path}")
        for warning in _translation_warnings(languages):
            console.print(f"croco demo: {warning}")
        return _run_plan(args, languages, home, console)


def _run_plan(args: argparse.Namespace, languages: list[str], home: Path, console) -> int:
    from dagster import DagsterInstance

    from croco_pipeline.commands.demo_resume import ResumePlan, fingerprint
    from croco_pipeline.core.models.lifetime import close_shared_generators
    from croco_pipeline.definitions import build_definitions
    from croco_pipeline.partitions import language_partitions

    round_policies = ("language", "multilingual") if args.round_policy == "both" else (args.round_policy,)
    definitions = build_definitions(rounds=args.rounds, round_policies=round_policies)
    instance = DagsterInstance.get()
    instance.add_dynamic_partitions(language_partitions.name, languages)
    loggers = {"croco_console": console.dagster_logger()}
    run_config: dict = {"loggers": {"croco_console": {}}}
    if args.settings:
        run_config["resources"] = {"settings": {"config": args.settings}}

    plan = demo_plan(languages, args.rounds, round_policies, args.full)
    # one run over every language needs them side by side among the partitions (a range of keys)
    known = instance.get_dynamic_partitions(language_partitions.name)
    ranged = _as_range(languages, known)

    demo_fingerprint = fingerprint(run_config)
    resume = ResumePlan(definitions, instance, demo_fingerprint)
    stage_seconds: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    try:
        for step in plan:
            if step.all_languages and ranged is None:  # fall back to a run per language
                runs = [DemoStep(step.job, language, step.only) for language in languages]
            else:
                runs = [step]
            for run in runs:
                succeeded = _run_step(run, definitions, instance, resume, run_config, loggers, console, args, ranged)
                if succeeded is False:
                    return 1
                if succeeded is not None:
                    stage_seconds[run.label] = succeeded
    finally:
        close_shared_generators()
    total = time.perf_counter() - started

    _print_results(console, stage_seconds, total, quiet=args.quiet)
    if args.rounds > 1:
        _print_rounds(console)
    console.print(
        f"\nData: {envs.storage_base()}   Dagster instance: {home}\n"
        "Report: <data>/report/report.md and win_rates.png\n"
        "Open the UI with:  make ui   (or, with .venv active, DAGSTER_HOME=.dagster_home dg dev)\n"
        'Query the pairs:   croco sql "SELECT language, count(*) FROM preference_pairs GROUP BY 1"'
    )
    return 0


@dataclass(frozen=True)
class DemoStep:
    """One run of the demo: ``job`` for one ``language`` (None: an unpartitioned job, or every language in one
    run when ``all_languages``), limited to the assets ``only`` names (None: the whole job)."""

    job: str
    language: str | None = None
    only: tuple[str, ...] | None = None
    all_languages: bool = False

    @property
    def label(self) -> str:
        if self.all_languages:
            return f"{self.job} [all languages]"
        return f"{self.job} [{self.language}]" if self.language else self.job


def demo_plan(languages: list[str], rounds: int, round_policies: tuple[str, ...], full: bool) -> list[DemoStep]:
    """The demo's runs, in order: round 0 per language; each later round of each chain; with ``full`` the
    baselines and the multilingual checkpoints; the report."""
    from croco_pipeline.core.rounds import multilingual_round_jobs, round_job

    plan = [DemoStep(CROCO_JOB, language) for language in languages]
    if rounds > 1 and "language" in round_policies:
        plan += [DemoStep(round_job(k), language) for k in range(1, rounds) for language in languages]
    if rounds > 1 and "multilingual" in round_policies:
        # round 0 of the multilingual chain: its checkpoint (not the SFT baseline's), evaluated per language
        plan.append(DemoStep(CROSS_LANGUAGE_JOB, only=MULTILINGUAL_DPO_ASSETS))
        plan += [
            DemoStep(MULTILINGUAL_EVALUATION_JOB, language, ("multilingual_evaluation",)) for language in languages
        ]
        for k in range(1, rounds):
            jobs = multilingual_round_jobs(k)
            plan.append(DemoStep(jobs["sampling"], all_languages=True))
            plan.append(DemoStep(jobs["training"]))
            plan += [DemoStep(jobs["evaluation"], language) for language in languages]
    if full:
        plan += [DemoStep(BASELINES_JOB, language) for language in languages]
        plan.append(DemoStep(CROSS_LANGUAGE_JOB))
        plan += [DemoStep(MULTILINGUAL_EVALUATION_JOB, language) for language in languages]
    plan.append(DemoStep(REPORT_JOB))
    return plan


# The round-0 assets the multilingual chain starts from (the cross-language multi-asset and its DPO checkpoint).
MULTILINGUAL_DPO_ASSETS = ("cross_language_pairs", "multilingual_dpo_checkpoint")


def _as_range(languages: list[str], known: list[str]) -> list[str] | None:
    """``languages`` in partition order when they are exactly a run of neighbouring partitions (a range of
    keys, which one run can cover), else None."""
    positions = sorted(known.index(code) for code in languages if code in known)
    if len(positions) != len(languages) or positions[-1] - positions[0] != len(positions) - 1:
        return None
    return [known[position] for position in positions]


def _run_step(step, definitions, instance, resume, run_config, loggers, console, args, ranged) -> dict | bool | None:
    """Run one demo step unless resume finds it done: its step seconds, False when it failed, None if skipped."""
    from croco_pipeline.commands.demo_resume import FINGERPRINT_TAG

    job = definitions.resolve_job_def(step.job).with_logger_defs(loggers)
    job_keys = set(job.asset_layer.selected_asset_keys)
    if step.only:
        job_keys = {key for key in job_keys if key.to_user_string() in step.only or _sibling(job, key, step.only)}
    partitions = ranged if step.all_languages else [step.language]
    if args.fresh:
        to_run = job_keys
    else:
        to_run = set().union(*(resume.to_run(job_keys, partition) for partition in partitions))
    if not to_run:
        console.print(f"croco demo: {step.label}: already done for this configuration, skipped (--fresh redoes it)")
        return None
    if to_run != job_keys:
        skipped = sorted(key.to_user_string() for key in job_keys - to_run)
        console.print(f"croco demo: {step.label}: resuming; already done: {', '.join(skipped)}")
    console.start_run(step.label, step.language)
    whole_job = to_run == set(job.asset_layer.selected_asset_keys)
    tags = {FINGERPRINT_TAG: resume.fingerprint}
    if step.all_languages:
        tags |= {"dagster/asset_partition_range_start": ranged[0], "dagster/asset_partition_range_end": ranged[-1]}
    result = job.execute_in_process(
        partition_key=step.language,
        instance=instance,
        run_config=run_config,
        raise_on_error=False,
        tags=tags,
        asset_selection=None if whole_job else sorted(to_run, key=lambda key: key.to_user_string()),
    )
    for partition in partitions:
        resume.record(to_run, partition)
    if not result.success:
        console.print(
            f"croco demo: {step.label} failed (run id {result.run_id}); the log file and the UI (make ui) have "
            "its logs."
        )
        return False
    return _step_seconds(instance, result.run_id)


def _sibling(job, key, names: tuple[str, ...]) -> bool:
    """Whether ``key`` is another output of a multi-asset that ``names`` selects (it runs with it)."""
    node = job.asset_layer.asset_graph.get(key)
    return any(other.to_user_string() in names for other in node.execution_set_asset_keys)


def _translation_warnings(languages: list[str]) -> list[str]:
    """A warning per language whose prompts the profile's translator will write when that translator
    is the embedded policy: a 135M English-centric model translates poorly."""
    from croco_pipeline.core.prompts.sets import shipped_languages

    if envs.get("CROCO_PROMPT_FILE") or envs.get("CROCO_PROMPT_DATASET") or envs.get("CROCO_TRANSLATOR_MODEL"):
        return []
    if envs.profile_name() not in ("embedded", "tiny"):
        return []
    missing = [code for code in languages if code not in shipped_languages()]
    if not missing:
        return []
    return [
        f"{', '.join(missing)} {'has' if len(missing) == 1 else 'have'} no shipped prompts: the embedded model "
        "translates them from English first, and it is a weak translator (expect rough prompts and a weaker "
        "effect); set CROCO_TRANSLATOR_MODEL to a real translator or CROCO_PROMPT_FILE to your prompts."
    ]


def _print_rounds(console) -> None:
    import polars as pl

    from croco_pipeline.core.io import catalog, storage

    base = envs.storage_base()
    rounds = catalog.query(
        base,
        "SELECT * FROM croco_rounds_report ORDER BY language, round_policy, round",
        storage.storage_options_for(base),
    )
    table = rounds.select(
        "language",
        pl.col("round_policy").alias("sampled_from"),
        "round",
        pl.col("win_rate").round(1),
        pl.col("standard_error").round(1).alias("se"),
        pl.col("lc_win_rate").round(1),
        pl.col("tuned_mean_reward").round(3).alias("mean_reward"),
        (100 * pl.col("tuned_language_share_independent")).round(1).alias("in_language_pct"),
        pl.col("pairs"),
    )
    with pl.Config(
        tbl_rows=-1, tbl_cols=-1, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, tbl_width_chars=200
    ):
        console.print("\nEach round's checkpoint against the base model, per language (win rates in %)")
        console.print(str(table))
    console.print(
        "Round 0 is today's chain; round k sampled from round k-1's checkpoint: the language's own "
        "(sampled_from = language) or the one multilingual checkpoint (multilingual; its pairs are the "
        "cross-language pairs whose prompt is in the language). Chart: <data>/report/rounds/"
    )


def _write_instance_config(home: Path) -> None:
    """A dagster.yaml for the demo's instance: no telemetry, and one model-loading step at a time."""
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n")


def _step_seconds(instance, run_id: str) -> dict[str, float]:
    return {
        stat.step_key: (stat.end_time or 0) - (stat.start_time or 0) for stat in instance.get_run_step_stats(run_id)
    }


def _print_results(console, stage_seconds: dict, total: float, *, quiet: bool = False) -> None:
    import polars as pl

    from croco_pipeline.core.evaluation.report import (
        EFFECT_CRITERIA,
        FORGETTING_VERDICT_NOTE,
        effect_table,
        forgetting_verdicts,
        share_not_shown,
    )
    from croco_pipeline.core.io import catalog, storage

    base = envs.storage_base()
    options = storage.storage_options_for(base)
    report = catalog.query(base, "SELECT * FROM croco_report ORDER BY language", options)
    table_format = dict(
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_width_chars=200,
        fmt_str_lengths=80,
    )
    with pl.Config(**table_format):
        console.print(f"\nEach tuned model against its base, held-out prompts, per language ({total:.0f} s in all)")
        console.print(str(effect_table(report)))
        console.print("Criteria: " + "; ".join(EFFECT_CRITERIA.values()) + ".")
        for line in _off_language_pairs(base, options, share_not_shown(report)):
            console.print(line)
        verdicts = forgetting_verdicts(report)
        if verdicts:
            console.print("\nForgetting, per language (the paper: SFT forgets, CroCo does not)")
            for line in verdicts:
                console.print("  " + line)
            console.print(FORGETTING_VERDICT_NOTE)
        losses = _checkpoint_losses(base, options)
        if losses is not None:
            console.print("\nTraining loss of every checkpoint (first → last step; mean of the first → last quarter)")
            console.print(str(losses.drop("collapsed")))
            for row in losses.filter(pl.col("collapsed")).iter_rows(named=True):
                console.print(
                    f"WARNING {row['checkpoint']} ({row['language']}): empty held-out answers, tuned / base, "
                    f"{row['empty answers, tuned / base']}: training collapsed it. Fewer optimizer steps or a lower "
                    "learning rate (`croco plan` shows both) keep it answering."
                )
        agreement = report["identifier_agreement"].drop_nulls()
        if agreement.len():
            console.print(
                "The in-language share is measured by py3langid; the demo's reward scorer uses fastText. The two "
                f"agree on {100 * agreement.mean():.0f}% of the answers judged here."
            )
        if quiet:
            return
        systems = report.select(
            "language",
            "system",
            pl.col("win_rate").round(1),
            pl.col("standard_error").round(1).alias("se"),
            pl.col("lc_win_rate").round(1),
            (100 * pl.col("mc_accuracy")).round(1).alias("mc_acc_pct"),
            pl.col("mc_delta").round(1).alias("mc_delta_pts"),
            pl.col("mean_reward").round(3),
            (100 * pl.col("language_share_independent")).round(1).alias("in_language_pct"),
            (100 * pl.col("language_share")).round(1).alias("in_language_fasttext_pct"),
            (100 * pl.col("rm_transfer_accuracy")).round(1).alias("rm_transfer_pct"),
        )
        console.print("\nEvery system against the base model (win rates in %)")
        console.print(str(systems))
        if not stage_seconds:  # every run was already done
            return
        times = pl.DataFrame(
            [
                {"run": label, "seconds": round(sum(steps.values()), 1), "slowest steps": _slowest(steps)}
                for label, steps in stage_seconds.items()
            ],
            schema={"run": pl.String, "seconds": pl.Float64, "slowest steps": pl.String},
        )
        console.print("\nSeconds per run, and its slowest steps")
        console.print(str(times))


def _slowest(steps: dict[str, float], shown: int = 3) -> str:
    """The ``shown`` slowest steps of a run with their seconds, named by stage (the run's label gives the
    round and language): ``dpo_checkpoint 38.4, generations 26.5, evaluation 18.0``."""
    ranked = sorted(steps.items(), key=lambda item: -item[1])[:shown]
    return ", ".join(f"{_stage_name(step)} {seconds:.1f}" for step, seconds in ranked if seconds >= 0.05)


def _stage_name(step: str) -> str:
    """A step's stage without its round and chain (``round1_multilingual_generations`` → ``generations``)."""
    return re.sub(r"^round\d+_", "", step).removeprefix("multilingual_")


def _off_language_pairs(base: str, options: dict | None, languages: list[str], floor: float = 0.5) -> list[str]:
    """A line per language of ``languages`` (those whose share did not rise) whose pairs mostly chose an
    answer outside it (the pair check's warning): the language term of the scorer had too little signal, so
    its other terms decided the pairs."""
    if not languages:  # every share rose: nothing to explain, nothing to read
        return []
    import polars as pl

    from croco_pipeline.core.io import catalog
    from croco_pipeline.core.pairs.checks import chosen_language_share

    pairs = catalog.query(base, "SELECT language, chosen, pool_size FROM preference_pairs", options)
    lines = []
    chosen = pairs.filter(pl.col("language").is_in(languages)).sort("language")
    for (language,), part in chosen.group_by("language", maintain_order=True):
        share = chosen_language_share(part, language)
        if share < floor:
            in_language, samples = round(share * part.height), part["pool_size"].max()
            lines.append(
                f"NOTE {language}: only {in_language} of {part.height} chosen answers are in {language} by the "
                "scorer's identifier (the pair check wants half): its other terms (repetition, truncation, length) "
                f"decided most pairs, likely why the share did not rise; more than its {samples} samples a prompt "
                f"(--set 'samples_per_prompt_by_language={{\"{language}\": {2 * samples}}}') give the best answer "
                "more chances to be in the language."
            )
    return lines


def collapsed(tuned_empty: float, base_empty: float, floor: float = 0.10) -> bool:
    """Whether a checkpoint's held-out answers are empty at least ``floor`` of the time and twice as often as
    the base model's: training pushed it to say nothing, which no loss curve shows."""
    return tuned_empty >= floor and tuned_empty >= 2 * base_empty


# Each checkpoint and the judgments of its evaluation (held-out answers, tuned beside base).
CHECKPOINTS = {
    "dpo_checkpoint": "evaluation_judgments",
    "sft_checkpoint": "sft_evaluation_judgments",
    "multilingual_dpo_checkpoint": "multilingual_evaluation_judgments",
    "multilingual_sft_checkpoint": "multilingual_sft_evaluation_judgments",
}


def _checkpoint_losses(base: str, options: dict | None):
    """Per checkpoint the demo trained: its first and last logged loss and whether it learned (the loss
    progress its asset recorded in ``final_metrics``), and the share of held-out prompts where one of its
    answers differs from the base's (same prompt, same seed); None when there is none."""
    import json

    import polars as pl

    from croco_pipeline.core.io import catalog

    connection = catalog.open_catalog(base, options)
    present = set(catalog.available_tables(connection))
    rows = []
    for name, judgments in CHECKPOINTS.items():
        if name not in present:
            continue
        moved, empty = {}, {}
        if judgments in present:
            answers = catalog.run_read_only(
                connection,
                "SELECT language, avg(CAST(differs AS DOUBLE)) AS moved, sum(tuned_empty) / sum(n) AS tuned_empty, "
                "sum(base_empty) / sum(n) AS base_empty FROM (SELECT language, prompt_id, "
                "bool_or(tuned_response <> base_response) AS differs, "
                "sum(CAST(trim(tuned_response) = '' AS DOUBLE)) AS tuned_empty, "
                "sum(CAST(trim(base_response) = '' AS DOUBLE)) AS base_empty, count(*) AS n "
                f"FROM {judgments} GROUP BY 1, 2) GROUP BY 1",
            )
            moved = dict(zip(answers["language"], answers["moved"]))
            empty = {row[0]: (row[2], row[3]) for row in answers.iter_rows()}
            moved[None] = sum(moved.values()) / len(moved) if moved else None  # a pooled checkpoint: all languages
            if empty:  # a pooled checkpoint: the mean over the languages it was judged in
                empty[None] = tuple(sum(pair[i] for pair in empty.values()) / len(empty) for i in (0, 1))
        for language, metrics in catalog.run_read_only(
            connection, f"SELECT language, final_metrics FROM {name} ORDER BY language"
        ).iter_rows():
            progress = json.loads(metrics or "{}")
            if "first_loss" not in progress:  # a checkpoint trained before croco recorded it
                continue
            rows.append(
                {
                    "checkpoint": name,
                    "language": language or "all",
                    "loss": f"{progress['first_loss']:.3f} → {progress['last_loss']:.3f}",
                    "quarter means": f"{progress['start_loss']:.3f} → {progress['end_loss']:.3f}",
                    "learned": "yes" if progress["learned"] else "NO: close to its base",
                    "prompts with answers ≠ base": "n/a"
                    if moved.get(language) is None
                    else f"{100 * moved[language]:.0f}%",
                    # a collapse DPO can reach: the scorer likes an empty answer better than a wrong-language one
                    "empty answers, tuned / base": "n/a"
                    if empty.get(language) is None
                    else f"{100 * empty[language][0]:.0f}% / {100 * empty[language][1]:.0f}%",
                    "collapsed": empty.get(language) is not None and collapsed(*empty[language]),
                }
            )
    return pl.DataFrame(rows) if rows else None
