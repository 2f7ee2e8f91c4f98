"""Two runs of the same partition at once through one Dagster instance: two `dagster asset materialize` runs
of prompts + generations for one language, started together on one DAGSTER_HOME and one storage, the instance
configured as `croco demo` configures its own (one slot in each pool). Both finish; the model pool
(``croco_accelerator``, every model-loading asset's pool) runs their steps one at a time; the tables are whole,
without duplicated rows, and equal to those of a single run.

Kept small so it ends in minutes on a loaded 2-core machine: 2 prompts, 2 samples of at most 4 tokens, the
transformers backend (no engine start per step; its samples are seeded per prompt like vLLM's).
"""

from __future__ import annotations

import time

import polars as pl
import pytest
from cli_runs import CliRun, cli_environment, dagster_home, materialisation_metadata
from dagster import AssetKey, DagsterInstance, materialize

from croco_pipeline.constants import MODEL_POOL
from croco_pipeline.definitions import ALL_ASSETS, build_definitions
from croco_pipeline.partitions import language_partitions

pytestmark = pytest.mark.system  # two whole runs in child processes

LANGUAGE = "da"
PROMPTS, SAMPLES = 2, 2
SETTINGS = {"chunk_prompts": 1, "max_train_prompts": PROMPTS, "samples_per_prompt": SAMPLES, "max_new_tokens": 4}
RUN_CONFIG = {"resources": {"settings": {"config": SETTINGS}}}
TRANSFORMERS = {"CROCO_GENERATOR_BACKEND": "transformers"}
# What `croco demo` writes for its instance (commands/demo.py): one model-loading step at a time.
ONE_SLOT_PER_POOL = "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"
ASSETS = ["prompts", "generations"]
TIMEOUT_S = 600


def _table(storage, asset: str) -> pl.DataFrame:
    return pl.read_parquet(storage / asset / f"language={LANGUAGE}" / "data.parquet")


def _single_run(storage, tiny_environ) -> None:
    """The same assets in one run, in this process, on an instance of its own."""
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(language_partitions.name, [LANGUAGE])
    result = materialize(
        ALL_ASSETS,
        selection=ASSETS,
        partition_key=LANGUAGE,
        instance=instance,
        resources=build_definitions(environ=tiny_environ(storage, **TRANSFORMERS)).resources,
        run_config=RUN_CONFIG,
    )
    assert result.success


def test_two_runs_of_one_partition_at_once_take_turns_and_write_whole_tables(tmp_path, tiny_environ):
    assert all(
        asset.op.pool == MODEL_POOL for asset in ALL_ASSETS if {key.path[-1] for key in asset.keys} & set(ASSETS)
    )
    storage = tmp_path / "croco_data"
    home = dagster_home(tmp_path / "dagster_home", [LANGUAGE], config=ONE_SLOT_PER_POOL)
    env = cli_environment(tiny_environ(storage, **TRANSFORMERS), home)
    select = ",".join(ASSETS)
    started = time.monotonic()
    runs = [
        CliRun(env, tmp_path, tmp_path / f"run{i}.log", select=select, partition=LANGUAGE, run_config=RUN_CONFIG)
        for i in (1, 2)
    ]
    ended: list[float] = []
    try:
        for run in runs:
            assert run.process.wait(timeout=TIMEOUT_S) == 0, run.output()
            ended.append(time.monotonic() - started)
    finally:
        for run in runs:
            run.kill_group()

    with DagsterInstance.from_config(str(home)) as instance:
        run_ids = [record.dagster_run.run_id for record in instance.get_run_records()]
        steps = sorted(
            (stat.start_time, stat.end_time, stat.step_key, run_id)
            for run_id in run_ids
            for stat in instance.get_run_step_stats(run_id)
        )
        metadata = [
            {key: value.value for key, value in record.asset_materialization.metadata.items()}
            for record in instance.fetch_materializations(AssetKey("generations"), limit=10).records
        ]
        latest = materialisation_metadata(instance, "generations")
    overlaps = [(a[2], b[2]) for a, b in zip(steps, steps[1:]) if b[0] < a[1]]
    waited = sum(max(0.0, b[0] - a[1]) for a, b in zip(steps, steps[1:]))
    print(
        f"reliability: two runs of prompts + generations [{LANGUAGE}] at once on one instance: both succeeded, "
        f"ending {ended[0]:.0f} s and {ended[1]:.0f} s after the start; {len(steps)} model-pool steps ran one at a "
        f"time ({len(overlaps)} overlaps), {waited:.0f} s between them; chunks computed per run: "
        f"{[m['chunks_computed'] for m in metadata]}"
    )
    assert len(run_ids) == 2 and len(steps) == 2 * len(ASSETS)
    assert overlaps == []  # the pool's one slot: never two model-loading steps at once
    assert len(metadata) == 2 and latest["prompts"] == PROMPTS

    reference = tmp_path / "single_run"
    _single_run(reference, tiny_environ)
    for asset in ASSETS:
        table = _table(storage, asset)
        assert table.equals(_table(reference, asset)), asset  # whole, and what one run writes
    generations = _table(storage, "generations")
    assert generations.height == PROMPTS * SAMPLES
    assert not generations.select("prompt_id", "sample_idx").is_duplicated().any()
    assert sorted(path.name for path in (storage / "generations" / f"language={LANGUAGE}").iterdir()) == [
        "data.parquet"
    ]
    assert not [path for path in (storage / "_staging").rglob("*") if path.is_file()]
    assert not [path for path in storage.rglob("*") if path.name.endswith(".tmp")]
