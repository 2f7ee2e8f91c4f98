"""A table in storage that is truncated, overwritten or corrupt: the step that reads it fails before it loads a
model, naming the file and the asset and partition to materialise again; once that is done the step runs.
A staged chunk that cannot be read back is computed again instead of failing its stage.
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from croco_pipeline.core.execution.staging import StagingArea, run_chunked
from croco_pipeline.core.io import atomic
from croco_pipeline.definitions import ALL_ASSETS, build_definitions
from croco_pipeline.partitions import language_partitions

LANGUAGE = "da"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _overwrite(path: Path) -> None:
    path.write_bytes(b"this is not parquet\n" * 20)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 64] = bytes(byte ^ 0xFF for byte in data[middle : middle + 64])
    path.write_bytes(bytes(data))


CORRUPTIONS = {"truncated": _truncate, "overwritten": _overwrite, "empty": _empty, "flipped bytes": _flip_bytes}


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_environ):
    storage = tmp_path_factory.mktemp("corrupt") / "croco_data"
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(language_partitions.name, [LANGUAGE])
    resources = build_definitions(environ=tiny_environ(storage, CROCO_GENERATOR_BACKEND="transformers")).resources

    def run(*selection: str):
        result = materialize(
            ALL_ASSETS,
            selection=list(selection),
            partition_key=LANGUAGE,
            instance=instance,
            resources=resources,
            raise_on_error=False,
        )
        failures = [event.step_failure_data.error.to_string() for event in result.all_events if event.is_step_failure]
        return result, "\n".join(failures)

    return storage, run


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_input_table_fails_the_reading_step_naming_the_file_and_the_asset(project, corruption):
    storage, run = project
    result, failures = run("prompts")
    assert result.success, failures
    table = storage / "prompts" / f"language={LANGUAGE}" / "data.parquet"
    CORRUPTIONS[corruption](table)
    started = time.perf_counter()
    result, failures = run("generations")
    seconds = time.perf_counter() - started
    assert not result.success
    assert "UnreadableTableError" in failures
    assert f"The input table of asset prompts [{LANGUAGE}] cannot be read: {table} is not a readable Parquet file" in (
        failures
    )
    assert f"({table.stat().st_size} bytes; truncated, overwritten or corrupt)" in failures
    assert (
        f"`dagster asset materialize -m croco_pipeline.definitions --select prompts --partition {LANGUAGE}`"
        in failures
    )
    assert not (storage / "generations").exists()  # nothing was written downstream
    print(f"reliability: corrupt input table ({corruption}): the reading step failed in {seconds:.1f} s")


def test_materialising_the_named_asset_again_recovers(project):
    storage, run = project
    _truncate(storage / "prompts" / f"language={LANGUAGE}" / "data.parquet")
    assert not run("generations")[0].success
    started = time.perf_counter()
    result, failures = run("prompts")  # what the message says to do
    assert result.success, failures
    result, failures = run("generations")
    assert result.success, failures
    generations = pl.read_parquet(storage / "generations" / f"language={LANGUAGE}" / "data.parquet")
    assert generations.height == 4 * 3 and generations.select("prompt_id", "sample_idx").is_duplicated().sum() == 0
    print(f"reliability: corrupt input table: prompts again + generations {time.perf_counter() - started:.1f} s")


def test_a_staged_chunk_that_cannot_be_read_back_is_computed_again(tmp_path, caplog):
    frame = pl.DataFrame({"prompt_id": ["p0", "p1", "p2"]})
    staging = StagingArea(str(tmp_path), "generations", LANGUAGE, "fingerprint")
    compute = lambda chunk, index: chunk.with_columns(pl.lit(index).alias("index"))
    atomic.write_parquet(compute(frame.slice(0, 1), 0), staging.chunk_path(0))
    atomic.write_parquet(compute(frame.slice(1, 1), 1), staging.chunk_path(1))
    _truncate(Path(staging.chunk_path(1)))
    result, progress = run_chunked(frame, "prompt_id", 1, staging, compute)
    assert (progress.reused, progress.computed, progress.unreadable) == (1, 2, 1)
    assert result.equals(compute(frame, 0).with_columns(pl.Series("index", [0, 1, 2], dtype=pl.Int32)))
    assert f"computing a staged chunk again: {staging.chunk_path(1)} is not a readable Parquet file" in caplog.text
