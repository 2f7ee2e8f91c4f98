"""Experiment tracking for training and evaluation runs: Trackio by default, MLflow or W&B by choice.

A :class:`Tracking` names the tracker, the project, the local folder the tracker writes to and the run.
Training hands it to TRL through ``report_to`` (always set explicitly: ``[]`` when tracking is off, so
no tracker installed by chance starts logging); evaluation logs its summary metrics with
:meth:`Tracking.log_metrics`. Every checkpoint manifest and asset records :meth:`Tracking.describe`, so
a row in the UI leads to its run in the dashboard.

- ``trackio`` (default): local-first, no account, no server. Runs land in ``<directory>`` as one SQLite
  file per project; ``trackio show --project croco`` (with ``TRACKIO_DIR=<directory>``) opens the
  dashboard.
- ``mlflow``: a local store, the SQLite file ``<directory>/mlflow.db`` (``mlflow ui --backend-store-uri
  sqlite:///<directory>/mlflow.db``). MLflow 3 refuses its older ``./mlruns`` folder store unless told
  to allow it (it is in maintenance mode), so the single-file store is used.
- ``wandb``: Weights & Biases, files under ``<directory>``; needs ``wandb login`` or ``WANDB_MODE=offline``.
- ``none``: nothing is tracked; the manifest and the PNG still hold the curves.

Imports no Dagster; the trackers themselves are imported only when a run is logged.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

Tracker = Literal["trackio", "mlflow", "wandb", "none"]
TRACKERS: tuple[str, ...] = get_args(Tracker)
DEFAULT_PROJECT = "croco"


@dataclass(frozen=True)
class Tracking:
    tracker: str = "none"
    project: str = DEFAULT_PROJECT
    directory: str | None = None  # local folder the tracker writes to (None: the tracker's own default)
    run_name: str | None = None

    def __post_init__(self) -> None:
        if self.tracker not in TRACKERS:
            raise ValueError(f"unknown tracker {self.tracker!r}; choose one of {', '.join(TRACKERS)}")

    @property
    def enabled(self) -> bool:
        return self.tracker != "none"

    def report_to(self) -> list[str]:
        """TRL/transformers ``report_to``: the one tracker, or ``[]`` (never transformers' "all")."""
        return [self.tracker] if self.enabled else []

    def training_args(self) -> dict[str, Any]:
        """``TrainingArguments`` fields for this tracker (report_to, run and project names)."""
        args: dict[str, Any] = {"report_to": self.report_to()}
        if self.enabled:
            args.update(run_name=self.run_name, project=self.project)
        if self.tracker == "trackio":
            args["trackio_static_space_id"] = False  # local only: never create or sync a Hub Space
        return args

    def location(self) -> str | None:
        """Where the runs are stored, as the tracker's own tools want it."""
        if not self.enabled or self.directory is None:
            return None
        if self.tracker == "mlflow":
            return f"sqlite:///{Path(self.directory, 'mlflow.db').resolve()}"
        return str(Path(self.directory).resolve())

    def describe(self) -> dict[str, Any]:
        """What manifests and asset metadata record: tracker, project, run name, where it is stored."""
        if not self.enabled:
            return {"tracker": "none"}
        return {"tracker": self.tracker, "project": self.project, "run": self.run_name, "location": self.location()}

    def activate(self) -> None:
        """Point the tracker at ``directory`` (environment of this process) before it starts a run."""
        if not self.enabled or self.directory is None:
            return
        Path(self.directory).mkdir(parents=True, exist_ok=True)
        if self.tracker == "trackio":
            os.environ["TRACKIO_DIR"] = self.location()
            _point_loaded_trackio_at(Path(self.location()))
        elif self.tracker == "mlflow":
            os.environ["MLFLOW_TRACKING_URI"] = self.location()
            os.environ["MLFLOW_EXPERIMENT_NAME"] = self.project
        elif self.tracker == "wandb":
            os.environ["WANDB_DIR"] = self.location()
            os.environ["WANDB_PROJECT"] = self.project

    def log_metrics(self, metrics: dict[str, Any], config: dict[str, Any] | None = None) -> None:
        """Log one set of summary metrics (an evaluation) as a run of its own; non-numbers are skipped."""
        if not self.enabled:
            return
        numbers = {
            key: float(value)
            for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
        }
        self.activate()
        if self.tracker == "trackio":
            import trackio

            trackio.init(project=self.project, name=self.run_name, config=config or {}, resume="allow")
            trackio.log(numbers)
            trackio.finish()
        elif self.tracker == "mlflow":
            import mlflow

            mlflow.set_tracking_uri(self.location())
            mlflow.set_experiment(self.project)
            with mlflow.start_run(run_name=self.run_name):
                if config:
                    mlflow.log_params({key: str(value) for key, value in config.items()})
                mlflow.log_metrics(numbers)
        elif self.tracker == "wandb":
            import wandb

            run = wandb.init(project=self.project, name=self.run_name, dir=self.location(), config=config or {})
            run.log(numbers)
            run.finish()


def _point_loaded_trackio_at(directory: Path) -> None:
    """Trackio reads ``TRACKIO_DIR`` once, when it is imported. A process that imported it already (a
    second step in the same process, a test session) would keep writing to the first folder: re-point
    the module-level paths its storage reads."""
    paths = {"TRACKIO_DIR": directory, "MEDIA_DIR": directory / "media", "ARTIFACTS_DIR": directory / "artifacts"}
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "trackio" or name.startswith("trackio.")):
            continue
        for attribute, path in paths.items():
            if isinstance(getattr(module, attribute, None), Path):
                setattr(module, attribute, path)
