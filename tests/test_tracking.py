"""Tracked runs and cards: real tiny TRL runs reporting to a real (local) Trackio store, and the model
and dataset cards written beside adapters and exports."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import polars as pl
import pytest

from croco_pipeline import envs, profiles
from croco_pipeline.core.io import cards
from croco_pipeline.core.training.config import DPOSettings, LoraSettings, SFTSettings
from croco_pipeline.core.training.tracking import Tracking
from croco_pipeline.core.training.trainer import load_manifest, train_dpo, train_sft


def _pairs(n: int = 6) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "prompt": [f"Question {i}: name a colour." for i in range(n)],
            "chosen": [f"Colour number {i} is a deep blue." for i in range(n)],
            "rejected": [f"No {i}." for i in range(n)],
        }
    )


def _tiny(settings_cls):
    return dataclasses.replace(settings_cls.embedded(), max_steps=2, max_length=96, lora=LoraSettings(r=4, alpha=8))


def _trackio_metrics(directory: Path, project: str, run: str) -> list[dict]:
    """Every logged row of ``run``, read straight from Trackio's SQLite file (not through trackio)."""
    database = directory / f"{project}.db"
    assert database.is_file(), f"no Trackio database in {directory}: {sorted(p.name for p in directory.iterdir())}"
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT metrics FROM metrics WHERE run_name = ? ORDER BY step", (run,)).fetchall()
    return [json.loads(metrics) for (metrics,) in rows]


def test_dpo_reports_to_trackio_and_names_the_run(tiny_policy_path: Path, tmp_path: Path) -> None:
    store = tmp_path / "tracking"
    tracking = Tracking("trackio", "croco-test", str(store), "dpo_checkpoint-da-abcdef12")
    result = train_dpo(
        str(tiny_policy_path),
        _pairs(),
        tmp_path / "adapter",
        _tiny(DPOSettings),
        manifest_extra={
            "language": "da",
            "policy": "org/tiny-policy",
            "data_asset": "preference_pairs",
            "data_partition": "da",
            "dagster_run_id": "abcdef12-run",
        },
        tracking=tracking,
    )
    manifest = load_manifest(result.output_dir)
    assert manifest["tracking"] == {
        "tracker": "trackio",
        "project": "croco-test",
        "run": "dpo_checkpoint-da-abcdef12",
        "location": str(store.resolve()),
    }
    logged = _trackio_metrics(store, "croco-test", "dpo_checkpoint-da-abcdef12")
    losses = [row["train/loss"] for row in logged if "train/loss" in row]
    assert len(losses) == 2  # one per optimizer step, the same numbers as the manifest's log history
    assert losses == pytest.approx([e["loss"] for e in manifest["log_history"] if "loss" in e])
    assert any("train/rewards/margins" in row for row in logged)

    card = (result.output_dir / cards.CARD_NAME).read_text()
    assert card.startswith("---\n") and 'base_model: "org/tiny-policy"' in card and '- "da"' in card
    for fact in (
        "preference_pairs",
        "abcdef12-run",
        "dpo_checkpoint-da-abcdef12",
        "| beta | 0.1 |",
        "| lora.r | 4 |",
        cards.NO_EVALUATION,
    ):
        assert fact in card


def test_sft_reports_to_trackio(tiny_policy_path: Path, tmp_path: Path) -> None:
    store = tmp_path / "elsewhere"  # another folder in the same process: Trackio must follow it
    records = _pairs().select("prompt", pl.col("chosen").alias("response"))
    result = train_sft(
        str(tiny_policy_path),
        records,
        tmp_path / "sft",
        _tiny(SFTSettings),
        tracking=Tracking("trackio", "croco", str(store), "sft-run"),
    )
    assert load_manifest(result.output_dir)["tracking"]["run"] == "sft-run"
    assert len([row for row in _trackio_metrics(store, "croco", "sft-run") if "train/loss" in row]) == 2
    assert "SFT on the best-of-N samples" in (result.output_dir / cards.CARD_NAME).read_text()


def test_without_tracking_report_to_is_empty_and_nothing_is_written(tiny_policy_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Tracking().training_args() == {"report_to": []}
    assert Tracking("trackio", run_name="r").training_args()["report_to"] == ["trackio"]
    result = train_dpo(str(tiny_policy_path), _pairs(), tmp_path / "adapter", _tiny(DPOSettings))
    assert load_manifest(result.output_dir)["tracking"] == {"tracker": "none"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_evaluation_metrics_become_a_run_of_their_own(tmp_path: Path) -> None:
    tracking = Tracking("trackio", "croco", str(tmp_path), "evaluation-da-1234")
    tracking.log_metrics(
        {"language": "da", "win_rate": 62.5, "standard_error": 4.1, "mc_accuracy": None, "n": 8},
        config={"system": "croco_monolingual"},
    )
    [row] = _trackio_metrics(tmp_path, "croco", "evaluation-da-1234")
    assert row["win_rate"] == 62.5 and row["standard_error"] == 4.1 and row["n"] == 8
    assert "language" not in row and "mc_accuracy" not in row


def test_mlflow_location_is_a_local_file_store(tmp_path: Path) -> None:
    tracking = Tracking("mlflow", "croco", str(tmp_path), "run")
    assert tracking.location() == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    assert tracking.training_args() == {"report_to": ["mlflow"], "run_name": "run", "project": "croco"}
    with pytest.raises(ValueError, match="unknown tracker 'tensorboard'"):
        Tracking("tensorboard")


def test_tracker_comes_from_the_profile_and_the_environment(tmp_path: Path) -> None:
    settings = profiles.resource_config("tiny", {})["settings"]
    assert settings["tracking_dir"] == str(Path(envs.DEFAULT_TRACKING_DIR).absolute())
    assert "tracker" not in settings  # the class default: trackio
    from croco_pipeline.resources.settings import PipelineSettings

    assert PipelineSettings().tracker == "trackio"
    environ = {"CROCO_TRACKER": "mlflow", "CROCO_TRACKING_DIR": str(tmp_path / "runs")}
    settings = profiles.resource_config("tiny", environ)["settings"]
    assert settings["tracker"] == "mlflow" and settings["tracking_dir"] == str(tmp_path / "runs")
    tracking = PipelineSettings(tracker="mlflow", tracking_dir=settings["tracking_dir"]).tracking("x")
    assert tracking.describe()["location"] == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"


def test_evaluation_fills_the_model_card(tmp_path: Path) -> None:
    manifest = {"kind": "dpo", "policy": str(tmp_path), "language": "ga", "settings": {"beta": 0.1}}
    cards.write_model_card(tmp_path, manifest)
    assert "base_model" not in (tmp_path / "README.md").read_text()  # a local folder is no Hub id
    row = {"language": "ga", "system": "croco_monolingual", "win_rate": 55.0, "standard_error": 3.0}
    assert cards.add_evaluation(str(tmp_path), row, dagster_run_id="run-42") == str(tmp_path / "README.md")
    card = (tmp_path / "README.md").read_text()
    assert cards.NO_EVALUATION not in card and "| win_rate | 55.0 |" in card and "run-42" in card
    # a second evaluation replaces the first one
    cards.add_evaluation(str(tmp_path), {**row, "win_rate": 60.0})
    card = (tmp_path / "README.md").read_text()
    assert "| win_rate | 60.0 |" in card and "55.0" not in card and card.count(cards.EVALUATION_START) == 1
    assert cards.add_evaluation(str(tmp_path / "no-card"), row) is None  # checkpoints from before cards


def test_mlflow_is_opt_in_and_stores_the_run_in_a_local_sqlite_file(tiny_policy_path: Path, tmp_path: Path) -> None:
    mlflow = pytest.importorskip("mlflow", reason="MLflow is opt-in: pip install 'croco[mlflow]'")
    tracking = Tracking("mlflow", "croco-mlflow", str(tmp_path / "runs"), "dpo_checkpoint-ga-0000")
    result = train_dpo(str(tiny_policy_path), _pairs(), tmp_path / "adapter", _tiny(DPOSettings), tracking=tracking)
    assert load_manifest(result.output_dir)["tracking"]["location"] == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert (tmp_path / "runs" / "mlflow.db").is_file()
    client = mlflow.MlflowClient(tracking_uri=tracking.location())
    [run] = client.search_runs([client.get_experiment_by_name("croco-mlflow").experiment_id])
    assert run.info.run_name == "dpo_checkpoint-ga-0000"
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 2
    tracking.log_metrics({"win_rate": 50.0}, config={"system": "croco_monolingual"})
    runs = client.search_runs([client.get_experiment_by_name("croco-mlflow").experiment_id])
    assert sorted(r.data.metrics.get("win_rate", -1.0) for r in runs) == [-1.0, 50.0]
