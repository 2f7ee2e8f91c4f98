"""Structured-task evaluation with EuroEval, as the paper ran it (docs/design.md §1.6).

The paper checks that CroCo keeps the model's skills by running per-language EuroEval suites on the
base and the tuned model (LoRA adapters merged first), on the test split, 3 iterations. EuroEval is an
optional dependency (``pip install euroeval``) and downloads its datasets from the Hugging Face Hub, so
this adapter never crashes the pipeline when either is missing: it returns a result whose status is
"skipped" and whose message says why.

EuroEval's Python API (``euroeval.Benchmarker``): ``Benchmarker(...).benchmark(model=..., dataset=...)``
returns ``BenchmarkResult`` records with ``dataset``, ``task`` and ``results["total"]`` (metric name ->
value, with ``<metric>_se`` standard errors). Each dataset runs on its own, so one unreachable dataset
does not hide the others' scores.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from croco_pipeline.core.io import storage
from croco_pipeline.core.languages.codes import get_language
from croco_pipeline.core.models.adapters import merge_adapter

log = logging.getLogger(__name__)

# The EuroEval datasets the reference evaluated, per language (EuroEval 17, test split, 3 iterations).
EUROEVAL_DATASETS: dict[str, tuple[str, ...]] = {
    "da": (
        "dala",
        "danish-entailment",
        "danish-lexical-inference",
        "danwic",
        "multi-wiki-qa-da",
        "danske-talemaader",
        "danish-citizen-tests",
        "ifeval-da",
    ),
    "nl": ("scala-nl", "squad-nl", "include-nl", "copa-nl", "multiloko-nl"),
    "en": ("scala-en", "wic", "squad", "life-in-the-uk", "mmlu-pro", "ifeval", "multiloko-en"),
    "fr": ("scala-fr", "fquad", "mmlu-fr", "include-fr", "multinrc-fr", "ifeval-fr", "multiloko-fr"),
    "de": ("scala-de", "germanquad", "mmlu-de", "include-de", "ifeval-de", "multiloko-de"),
    "it": ("scala-it", "wic-ita", "mmlu-it", "include-it", "ifeval-it"),
    "es": ("scala-es", "mlqa-es", "include-es", "multinrc-es", "ifeval-es", "multiloko-es"),
    "no": ("norquad", "nrk-quiz-qa", "idioms-no", "mmlu-no", "nor-common-sense-qa"),
    "sv": ("multi-wiki-qa-sv", "mmlu-sv", "skolprov", "multiloko-sv", "hellaswag-sv"),
    "pt": ("multi-wiki-qa-pt", "mmlu-pt", "multiloko-pt", "goldenswag-pt"),
    "fi": ("tidyqa-fi", "include-fi", "hellaswag-fi"),
}
REFERENCE_NUM_ITERATIONS = 3

NOT_INSTALLED = (
    "skipped: EuroEval is not installed; make its own environment with scripts/euroeval_env.sh and set "
    "settings.euroeval_python (CROCO_EUROEVAL_PYTHON) to its Python"
)
NOT_REACHABLE = "skipped: dataset not reachable"

SCORE_SCHEMA = {
    "language": pl.String,
    "dataset": pl.String,
    "status": pl.String,  # "ok" | "skipped" | "failed"
    "message": pl.String,
    "task": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "standard_error": pl.Float64,
}

# Error text that means "could not download" rather than "the model or EuroEval broke".
_UNREACHABLE_HINTS = (
    "connection",
    "offline",
    "couldn't reach",
    "could not reach",
    "name or service not known",
    "max retries",
    "timed out",
    "timeout",
    "hub is down",
    "huggingfacehubdown",
    "network",
    "internet",
    "localentrynotfound",
    "temporary failure in name resolution",
)


@dataclass
class EuroEvalRun:
    """The outcome of one EuroEval run for one model and language.

    ``status``: "ok" (every dataset scored), "partial" (some), "skipped" (none could run, e.g. EuroEval
    missing or no network) or "failed" (datasets ran into errors other than reachability).
    ``scores``: one row per (dataset, metric) that was scored, and one row per dataset that was not,
    with its status and message.
    """

    language: str
    model: str
    status: str
    message: str
    datasets: tuple[str, ...]
    scores: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SCORE_SCHEMA))


def euroeval_available() -> bool:
    """True when the ``euroeval`` package can be imported."""
    return importlib.util.find_spec("euroeval") is not None


def default_datasets(language: str) -> tuple[str, ...]:
    """The reference's EuroEval datasets for ``language`` (empty when it evaluated none there)."""
    get_language(language)
    return EUROEVAL_DATASETS.get(language, ())


def run_euroeval(
    model_path: str,
    language: str,
    datasets: Sequence[str] | None = None,
    *,
    adapter_path: str | None = None,
    num_iterations: int = REFERENCE_NUM_ITERATIONS,
    evaluate_test_split: bool = True,
    few_shot: bool = True,
    cache_dir: str | None = None,
    merged_dir: str | None = None,
    benchmarker_options: dict[str, Any] | None = None,
    python: str | None = None,
) -> EuroEvalRun:
    """Run EuroEval on ``model_path`` for ``language``'s datasets (default: :data:`EUROEVAL_DATASETS`).

    A LoRA ``adapter_path`` is merged into its base first (into ``merged_dir``, else a temporary
    folder), as the reference did. Never raises for a missing package or an unreachable dataset: the
    returned :class:`EuroEvalRun` says "skipped" and why. ``benchmarker_options`` go to
    ``euroeval.Benchmarker`` as is (e.g. ``{"gpu_memory_utilization": 0.8}``). ``python``: the interpreter
    of an environment of EuroEval's own (``scripts/euroeval_env.sh``; EuroEval 17 needs transformers < 5,
    croco runs 5), used instead of importing EuroEval here.
    """
    chosen = tuple(datasets) if datasets is not None else default_datasets(language)
    if not chosen:
        return EuroEvalRun(
            language,
            model_path,
            "skipped",
            f"skipped: no EuroEval datasets configured for {language!r} (the reference evaluated "
            f"{', '.join(EUROEVAL_DATASETS)}); pass datasets=[...] to choose some",
            chosen,
            _skipped_rows(language, (), ""),
        )
    if python is None and not euroeval_available():
        return EuroEvalRun(
            language, model_path, "skipped", NOT_INSTALLED, chosen, _skipped_rows(language, chosen, NOT_INSTALLED)
        )

    with tempfile.TemporaryDirectory(prefix="croco-euroeval-merge-") as tmp:
        model = model_path
        if adapter_path is not None:
            model = str(merge_adapter(adapter_path, merged_dir or Path(tmp) / "merged"))
        return _benchmark(
            model,
            language,
            chosen,
            num_iterations,
            evaluate_test_split,
            few_shot,
            cache_dir,
            benchmarker_options or {},
            python,
        )


def _benchmark(
    model: str,
    language: str,
    datasets: tuple[str, ...],
    num_iterations: int,
    evaluate_test_split: bool,
    few_shot: bool,
    cache_dir: str | None,
    options: dict[str, Any],
    python: str | None = None,
) -> EuroEvalRun:
    """EuroEval in this process, or with ``python`` (an environment of its own) through the runner script."""
    if python is not None:
        request = dict(
            model=model,
            datasets=list(datasets),
            num_iterations=num_iterations,
            evaluate_test_split=evaluate_test_split,
            few_shot=few_shot,
            cache_dir=cache_dir,
            options=options,
        )
        try:
            outcome = _run_in_environment(python, request)
        except RuntimeError as error:
            message = f"failed: {error}"
            return EuroEvalRun(
                language, model, "failed", message, datasets, _skipped_rows(language, datasets, message, "failed")
            )

        def benchmark(dataset: str) -> list:
            entry = outcome.get(dataset) or {"error": "the runner returned nothing for it", "results": []}
            if entry["error"]:
                raise RuntimeError(entry["error"])
            return entry["results"]

        return _collect(model, language, datasets, benchmark)

    from euroeval import Benchmarker

    settings: dict[str, Any] = dict(
        progress_bar=False,
        save_results=False,  # results come back in the return value; no stray file in the working dir
        raise_errors=True,  # so each dataset's failure reason reaches the result table
        evaluate_test_split=evaluate_test_split,
        few_shot=few_shot,
        num_iterations=num_iterations,
    )
    if cache_dir is not None:
        settings["cache_dir"] = cache_dir
    settings.update(options)
    try:
        benchmarker = Benchmarker(**settings)
    except Exception as error:  # e.g. an option this EuroEval version does not know
        message = f"failed: could not start EuroEval ({type(error).__name__}: {error})"
        return EuroEvalRun(
            language, model, "failed", message, datasets, _skipped_rows(language, datasets, message, "failed")
        )
    return _collect(
        model, language, datasets, lambda dataset: list(benchmarker.benchmark(model=model, dataset=dataset))
    )


def _run_in_environment(python: str, request: dict) -> dict:
    """The runner script's per-dataset outcome, run by ``python``; a RuntimeError says why it did not run."""
    import json
    import subprocess

    runner = Path(__file__).with_name("euroeval_runner.py")
    with tempfile.TemporaryDirectory(prefix="croco-euroeval-") as folder:
        request_path, result_path = Path(folder) / "request.json", Path(folder) / "result.json"
        request_path.write_text(json.dumps(request))
        try:
            done = subprocess.run(
                # -P: the runner's folder stays off sys.path, or `import euroeval` would find this module
                [python, "-P", str(runner), str(request_path), str(result_path)],
                capture_output=True,
                text=True,
            )
        except OSError as error:
            raise RuntimeError(
                f"cannot run the EuroEval environment's Python {python!r} ({error}); make it with "
                "scripts/euroeval_env.sh or fix settings.euroeval_python (CROCO_EUROEVAL_PYTHON)"
            ) from None
        if done.returncode or not result_path.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"EuroEval's environment ({python}) exited with {done.returncode}: {' | '.join(tail)}")
        return json.loads(result_path.read_text())["datasets"]


def _collect(model: str, language: str, datasets: tuple[str, ...], benchmark) -> EuroEvalRun:
    """Score every dataset with ``benchmark(dataset) -> results``; a dataset's error becomes its row's message."""
    frames: list[pl.DataFrame] = []
    statuses: list[str] = []
    for dataset in datasets:
        try:
            results = benchmark(dataset)
        except Exception as error:
            status, message = _classify(error)
            log.warning("EuroEval %s on %s: %s", dataset, model, message)
            frames.append(_skipped_rows(language, (dataset,), message, status))
            statuses.append(status)
            continue
        rows = [row for result in results for row in _result_rows(language, dataset, result)]
        if not rows:
            message = f"{NOT_REACHABLE} or not evaluated (EuroEval returned no result for {dataset!r})"
            frames.append(_skipped_rows(language, (dataset,), message))
            statuses.append("skipped")
            continue
        frames.append(pl.DataFrame(rows, schema=SCORE_SCHEMA))
        statuses.append("ok")

    scores = pl.concat(frames) if frames else pl.DataFrame(schema=SCORE_SCHEMA)
    n_ok = statuses.count("ok")
    if n_ok == len(datasets):
        status, message = "ok", f"{n_ok} EuroEval dataset(s) scored"
    elif n_ok:
        status, message = (
            "partial",
            f"{n_ok} of {len(datasets)} EuroEval datasets scored; see the per-dataset messages",
        )
    elif "failed" in statuses:
        status, message = "failed", "no EuroEval dataset could be scored; see the per-dataset messages"
    else:
        status, message = "skipped", f"{NOT_REACHABLE}: none of {', '.join(datasets)} could be loaded"
    return EuroEvalRun(language, model, status, message, datasets, scores)


def _classify(error: Exception) -> tuple[str, str]:
    """("skipped", "skipped: dataset not reachable (...)") for download problems, else ("failed", ...)."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, (ConnectionError, TimeoutError)) or any(hint in text.lower() for hint in _UNREACHABLE_HINTS):
        return "skipped", f"{NOT_REACHABLE} ({text})"
    return "failed", f"failed: {text}"


def _result_rows(language: str, dataset: str, result: Any) -> list[dict]:
    """Flatten one BenchmarkResult's ``results["total"]`` into (metric, value, standard_error) rows."""
    if isinstance(result, dict):  # from the runner in EuroEval's own environment
        data = result
    else:
        data = result.model_dump() if hasattr(result, "model_dump") else dict(vars(result))
    totals = (data.get("results") or {}).get("total") or {}
    task = str(data.get("task", ""))
    rows = []
    for name, value in totals.items():
        if name.endswith("_se") or not isinstance(value, (int, float)):
            continue
        se = totals.get(f"{name}_se")
        rows.append(
            {
                "language": language,
                "dataset": str(data.get("dataset", dataset)),
                "status": "ok",
                "message": "",
                "task": task,
                "metric": name,
                "value": float(value),
                "standard_error": float(se) if isinstance(se, (int, float)) else None,
            }
        )
    return rows


def _skipped_rows(language: str, datasets: Sequence[str], message: str, status: str = "skipped") -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "language": language,
                "dataset": d,
                "status": status,
                "message": message,
                "task": None,
                "metric": None,
                "value": None,
                "standard_error": None,
            }
            for d in datasets
        ],
        schema=SCORE_SCHEMA,
    )


SYSTEM_SCORE_SCHEMA = {"system": pl.String, **SCORE_SCHEMA}


@dataclass
class SystemsRun:
    """EuroEval over several systems of one language: ``scores`` (``SYSTEM_SCORE_SCHEMA``), an overall
    ``status`` ("ok", "partial", "skipped" or "failed") and a ``message`` a person reads in the UI."""

    status: str
    message: str
    scores: pl.DataFrame


# The checkpoints EuroEval scores beside the base model, where they exist: (system, asset, per language).
EUROEVAL_CHECKPOINTS = (
    ("croco_monolingual", "dpo_checkpoint", True),
    ("sft_best_of_n", "sft_checkpoint", True),
    ("croco_multilingual", "multilingual_dpo_checkpoint", False),
    ("sft_multilingual", "multilingual_sft_checkpoint", False),
)


def trained_systems(base: str, language: str, storage_options: dict | None = None) -> dict[str, str | None]:
    """The systems EuroEval scores for ``language``: ``base`` (no adapter) and each system of
    :data:`EUROEVAL_CHECKPOINTS` whose adapter has been trained under the storage base ``base``, as a
    local folder (downloaded when the base is remote). The argument :func:`run_euroeval_systems` takes."""
    adapters: dict[str, str | None] = {"base": None}
    for system, checkpoint, per_language in EUROEVAL_CHECKPOINTS:
        folder = storage.checkpoint_dir(base, checkpoint, language if per_language else None)
        if storage.exists(storage.join(folder, "adapter_config.json"), storage_options):
            adapters[system] = str(storage.local_copy(folder, storage_options))
    return adapters


def run_euroeval_systems(
    model_path: str,
    language: str,
    adapters: dict[str, str | None],
    datasets: Sequence[str] | None = None,
    **options: Any,
) -> SystemsRun:
    """:func:`run_euroeval` for each system in ``adapters`` (name -> LoRA adapter folder, None for the
    base model), its scores stacked with a ``system`` column. The status is "ok" when every system's
    run is, "skipped" when none could run (the message then says why, e.g. EuroEval is not
    installed), else "partial" or "failed" with each system's status in the message."""
    runs = {
        system: run_euroeval(model_path, language, datasets, adapter_path=adapter, **options)
        for system, adapter in adapters.items()
    }
    scores = pl.concat(
        [run.scores.select(pl.lit(system, pl.String).alias("system"), pl.all()) for system, run in runs.items()]
        or [pl.DataFrame(schema=SYSTEM_SCORE_SCHEMA)]
    )
    statuses = {run.status for run in runs.values()}
    messages = {run.message for run in runs.values()}
    status = statuses.pop() if len(statuses) == 1 else "partial" if statuses & {"ok", "partial"} else "failed"
    message = messages.pop() if len(messages) == 1 else "; ".join(f"{s}: {run.message}" for s, run in runs.items())
    return SystemsRun(status=status, message=message, scores=scores)
