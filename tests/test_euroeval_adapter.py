"""EuroEval adapter: the reference's dataset table, and clear "skipped" results instead of crashes.

EuroEval is not installed here and its datasets cannot be downloaded, so the benchmark itself does
not run in these tests; what runs is everything the pipeline sees when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from croco_pipeline.core.evaluation.euroeval import (
    EUROEVAL_DATASETS,
    NOT_INSTALLED,
    REFERENCE_NUM_ITERATIONS,
    _classify,
    _result_rows,
    default_datasets,
    euroeval_available,
    run_euroeval,
    trained_systems,
)

# The languages docs/design.md §1.6 lists EuroEval datasets for, with each language's first and last dataset.
DESIGN_TABLE = {
    "da": ("dala", "ifeval-da", 8),
    "nl": ("scala-nl", "multiloko-nl", 5),
    "en": ("scala-en", "multiloko-en", 7),
    "fr": ("scala-fr", "multiloko-fr", 7),
    "de": ("scala-de", "multiloko-de", 6),
    "it": ("scala-it", "ifeval-it", 5),
    "es": ("scala-es", "multiloko-es", 6),
    "no": ("norquad", "nor-common-sense-qa", 5),
    "sv": ("multi-wiki-qa-sv", "hellaswag-sv", 5),
    "pt": ("multi-wiki-qa-pt", "goldenswag-pt", 4),
    "fi": ("tidyqa-fi", "hellaswag-fi", 3),
}


def test_dataset_table_covers_the_design_languages() -> None:
    assert set(EUROEVAL_DATASETS) == set(DESIGN_TABLE)
    for language, (first, last, count) in DESIGN_TABLE.items():
        datasets = default_datasets(language)
        assert (datasets[0], datasets[-1], len(datasets)) == (first, last, count), language
        assert len(set(datasets)) == len(datasets)
    assert REFERENCE_NUM_ITERATIONS == 3


@pytest.mark.skipif(euroeval_available(), reason="euroeval is installed here")
def test_missing_euroeval_gives_a_skipped_result(tmp_path) -> None:
    run = run_euroeval(str(tmp_path / "some-model"), "da")
    assert run.status == "skipped"
    assert run.message == NOT_INSTALLED
    assert "scripts/euroeval_env.sh" in NOT_INSTALLED and "CROCO_EUROEVAL_PYTHON" in NOT_INSTALLED
    assert run.datasets == EUROEVAL_DATASETS["da"]
    assert run.scores["dataset"].to_list() == list(EUROEVAL_DATASETS["da"])
    assert run.scores["status"].unique().to_list() == ["skipped"]
    assert run.scores["message"].unique().to_list() == [NOT_INSTALLED]
    chosen = run_euroeval("org/model", "en", datasets=["squad"])
    assert chosen.datasets == ("squad",) and chosen.status == "skipped"


def test_a_language_without_datasets_is_skipped_with_a_reason() -> None:
    run = run_euroeval("org/model", "mt")
    assert run.status == "skipped"
    assert "no EuroEval datasets configured for 'mt'" in run.message
    assert run.scores.is_empty()
    with pytest.raises(ValueError, match="Unknown language code"):
        run_euroeval("org/model", "xx")


def test_download_errors_read_as_not_reachable_and_others_as_failed() -> None:
    status, message = _classify(ConnectionError("Couldn't reach 'EuroEval/dala' on the Hub"))
    assert status == "skipped" and message.startswith("skipped: dataset not reachable (ConnectionError")
    status, message = _classify(OSError("[Errno -2] Name or service not known"))
    assert status == "skipped"
    status, message = _classify(ValueError("The model has no chat template"))
    assert (status, message) == ("failed", "failed: ValueError: The model has no chat template")


def test_benchmark_results_flatten_to_metric_rows() -> None:
    """EuroEval's BenchmarkResult.results["total"] holds metric values and their "_se" errors."""
    result = SimpleNamespace(
        dataset="dala",
        task="linguistic-acceptability",
        results={
            "total": {"test_mcc": 31.5, "test_mcc_se": 2.1, "test_macro_f1": 60.0, "test_macro_f1_se": 1.5},
            "raw": [{"test_mcc": 30.0}],
        },
    )
    rows = _result_rows("da", "dala", result)
    assert [(r["metric"], r["value"], r["standard_error"]) for r in rows] == [
        ("test_mcc", 31.5, 2.1),
        ("test_macro_f1", 60.0, 1.5),
    ]
    assert {r["status"] for r in rows} == {"ok"} and {r["task"] for r in rows} == {"linguistic-acceptability"}


@pytest.mark.skipif(euroeval_available(), reason="euroeval is installed here")
def test_the_asset_is_skipped_with_its_reason_in_the_ui_not_failed(tmp_path, tiny_environ) -> None:
    import json

    import polars as pl
    from dagster import DagsterInstance

    from croco_pipeline.definitions import build_definitions

    storage = tmp_path / "croco_data"
    adapter = storage / "checkpoints" / "dpo_checkpoint" / "language=da"  # a checkpoint "trained so far"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 16}))
    definitions = build_definitions(environ=tiny_environ(storage))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("language", ["da"])

    assert "euroeval_scores" not in {
        key.to_user_string() for key in definitions.resolve_job_def("croco_job").asset_layer.selected_asset_keys
    }
    result = definitions.resolve_job_def("euroeval_job").execute_in_process(partition_key="da", instance=instance)
    assert result.success
    metadata = result.asset_materializations_for_node("euroeval_scores")[0].metadata
    assert metadata["status"].value == "skipped"
    assert metadata["message"].value == NOT_INSTALLED
    assert metadata["systems"].value == "base, croco_monolingual"
    scores = pl.read_parquet(storage / "euroeval_scores" / "language=da" / "data.parquet")
    assert scores.group_by("system").len().sort("system").rows() == [
        ("base", len(EUROEVAL_DATASETS["da"])),
        ("croco_monolingual", len(EUROEVAL_DATASETS["da"])),
    ]
    assert scores["status"].unique().to_list() == ["skipped"]


def test_trained_systems_are_the_base_and_the_checkpoints_that_exist(tmp_path: Path) -> None:
    """EuroEval scores the base and every adapter trained so far: the language's own checkpoints and the
    cross-language ones (trained once for all languages); a folder without an adapter is not one."""
    checkpoints = tmp_path / "checkpoints"
    for folder in ("dpo_checkpoint/language=da", "multilingual_sft_checkpoint", "sft_checkpoint/language=nl"):
        (checkpoints / folder).mkdir(parents=True)
        (checkpoints / folder / "adapter_config.json").write_text("{}")
    (checkpoints / "sft_checkpoint" / "language=da").mkdir(parents=True)  # begun, no adapter in it
    assert trained_systems(str(tmp_path), "da") == {
        "base": None,
        "croco_monolingual": str(checkpoints / "dpo_checkpoint" / "language=da"),
        "sft_multilingual": str(checkpoints / "multilingual_sft_checkpoint"),
    }


STAND_IN = '''
"""A stand-in for EuroEval (its datasets cannot be downloaded here): the Benchmarker API croco calls."""
class Result:
    def __init__(self, dataset):
        self.dataset = dataset
    def model_dump(self):
        return {"dataset": self.dataset, "task": "linguistic-acceptability",
                "results": {"total": {"test_mcc": 0.25, "test_mcc_se": 0.05}}}

class Benchmarker:
    def __init__(self, **settings):
        assert settings["num_iterations"] == 3 and settings["evaluate_test_split"] is True
    def benchmark(self, model, dataset):
        if dataset == "offline-set":
            raise ConnectionError("couldn't reach the Hugging Face Hub")
        return [Result(dataset)]
'''


def test_euroeval_runs_in_an_environment_of_its_own(tmp_path) -> None:
    """EuroEval 17 cannot share croco's environment: croco runs its runner script with that environment's
    Python and reads the scores back, each dataset's failure kept apart."""
    import os
    import stat
    import sys

    package = tmp_path / "env" / "euroeval"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(STAND_IN)
    python = tmp_path / "python"  # what scripts/euroeval_env.sh makes: an interpreter that imports euroeval
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{package.parent}" exec "{sys.executable}" "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    run = run_euroeval("some/model", "da", ["dala", "offline-set"], python=str(python))
    assert run.status == "partial"
    scored = run.scores.filter(run.scores["status"] == "ok").row(0, named=True)
    assert (scored["dataset"], scored["metric"], scored["value"], scored["standard_error"]) == (
        "dala",
        "test_mcc",
        0.25,
        0.05,
    )
    offline = run.scores.filter(run.scores["dataset"] == "offline-set").row(0, named=True)
    assert offline["status"] == "skipped" and "not reachable" in offline["message"]
    # a missing environment is a clear failure that says how to make one
    missing = run_euroeval("some/model", "da", ["dala"], python=str(tmp_path / "nope" / "python"))
    assert missing.status == "failed" and "scripts/euroeval_env.sh" in missing.message
    assert os.environ.get("PYTHONPATH") is None or str(package.parent) not in os.environ["PYTHONPATH"]
