"""The disk filling up mid-write, on a real small file system (a tmpfs mounted by the test; needs root, skipped
otherwise): a Parquet table, a staged chunk and a published checkpoint each fail with ``DiskFullError``
naming the path and the space left, no half-written file becomes visible, what stood there before is
unchanged, and once space is freed the rerun finishes (a chunked stage reusing the chunks it had staged).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from croco_pipeline.core.execution.staging import StagingArea, run_chunked
from croco_pipeline.core.io import atomic
from croco_pipeline.core.io.atomic import DiskFullError
from croco_pipeline.definitions import ALL_ASSETS, build_definitions
from croco_pipeline.partitions import language_partitions

DISK_MIB = 4


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory):
    """A 4 MiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mountpoint = tmp_path_factory.mktemp("small_disk")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m", "tmpfs", str(mountpoint)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False)
        if os.path.ismount(mountpoint):
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.fixture
def disk(small_disk):
    """The small disk, emptied before and after each test."""

    def empty():
        for path in small_disk.iterdir():
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    empty()
    yield small_disk
    empty()


def _fill(disk: Path, leave: int) -> Path:
    """A filler file that leaves about ``leave`` bytes free; remove it to free the space."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with open(filler, "ab") as handle:
        handle.write(b"\0" * max(free - leave, 0))
    return filler


def _frame(rows: int, seed: int = 0) -> pl.DataFrame:
    """Incompressible rows (random text), so a frame's size on disk is about ``rows`` × 200 bytes."""
    rng = np.random.default_rng(seed)
    text = [rng.bytes(100).hex() for _ in range(rows)]
    return pl.DataFrame({"row": list(range(rows)), "text": text})


def _hidden(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob(".*"))


def test_a_table_write_that_fills_the_disk_leaves_the_old_table(disk):
    target = disk / "reward_scores" / "language=da" / "data.parquet"
    atomic.write_parquet(_frame(100), target)
    _fill(disk, leave=64 * 1024)
    started = time.perf_counter()
    with pytest.raises(DiskFullError) as full:
        atomic.write_parquet(_frame(2000, seed=1), target)  # about 400 KB
    message = str(full.value)
    assert f"No space left on the device while writing the file {target}" in message
    assert "had been written when the write failed" in message
    assert f"free of {DISK_MIB}.0 MiB on the file system of {target.parent}" in message
    assert "CROCO_STORAGE" in message
    assert pl.read_parquet(target).equals(_frame(100))  # the old table, whole
    assert _hidden(disk / "reward_scores") == []  # no temporary left behind
    print(f"reliability: disk full writing a table: failed in {time.perf_counter() - started:.2f} s; {message}")


def test_a_staged_chunk_that_fills_the_disk_is_not_kept_and_the_rerun_reuses_the_others(disk):
    frame = pl.DataFrame({"prompt_id": [f"p{i}" for i in range(6)]})
    staging = StagingArea(str(disk), "generations", "da", "fingerprint")
    computed: list[int] = []
    filler: list[Path] = []

    def compute(chunk: pl.DataFrame, index: int) -> pl.DataFrame:
        computed.append(index)
        if index == 2 and not filler:  # the disk fills up while chunk 2 is being computed
            filler.append(_fill(disk, leave=16 * 1024))
        return _frame(400, seed=index).with_columns(prompt_id=pl.lit(chunk["prompt_id"][0]))  # about 80 KB

    with pytest.raises(DiskFullError) as full:
        run_chunked(frame, "prompt_id", 1, staging, compute)
    assert f"while writing the file {staging.chunk_path(2)}" in str(full.value)
    staged = sorted(Path(staging.folder).iterdir())
    assert [path.name for path in staged] == ["chunk-00000.parquet", "chunk-00001.parquet"]  # whole ones only
    assert [pl.read_parquet(path).height for path in staged] == [400, 400]

    filler[0].unlink()  # space freed: the rerun computes only the chunks not staged
    computed.clear()
    started = time.perf_counter()
    result, progress = run_chunked(frame, "prompt_id", 1, staging, compute)
    recovery = time.perf_counter() - started
    assert computed == [2, 3, 4, 5] and (progress.reused, progress.computed) == (2, 4)
    assert result.height == 6 * 400 and result.select("prompt_id", "row").is_duplicated().sum() == 0
    print(f"reliability: disk full writing a staged chunk: rerun reused 2 of 6 chunks, {recovery:.2f} s")


def test_a_checkpoint_that_fills_the_disk_leaves_the_old_checkpoint(disk, tmp_path):
    destination = disk / "checkpoints" / "dpo_checkpoint" / "language=da"
    old = tmp_path / "old-adapter"
    old.mkdir()
    (old / "adapter_config.json").write_text('{"r": 16}')
    atomic.publish_directory(str(old), str(destination))
    new = tmp_path / "new-adapter"
    new.mkdir()
    (new / "adapter_config.json").write_text('{"r": 8}')
    (new / "adapter_model.safetensors").write_bytes(os.urandom(1024 * 1024))
    _fill(disk, leave=256 * 1024)
    with pytest.raises(DiskFullError) as full:
        atomic.publish_directory(str(new), str(destination))
    message = str(full.value)
    assert f"while writing the folder {destination}" in message and "free of" in message
    assert sorted(path.name for path in destination.iterdir()) == ["adapter_config.json"]
    assert (destination / "adapter_config.json").read_text() == '{"r": 16}'  # the old checkpoint, unchanged
    assert _hidden(destination.parent) == []  # no half-copied folder beside it
    print(f"reliability: disk full publishing a checkpoint: {message}")


def test_a_step_that_fills_the_disk_fails_with_the_path_and_the_rerun_finishes(small_disk, tiny_environ):
    storage = small_disk / "croco_data"
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(language_partitions.name, ["da"])
    environ = tiny_environ(storage, CROCO_GENERATOR_BACKEND="transformers")
    resources = build_definitions(environ=environ).resources
    config = {"resources": {"settings": {"config": {"chunk_prompts": 1}}}}

    def run(*selection: str):
        return materialize(
            ALL_ASSETS,
            selection=list(selection),
            partition_key="da",
            instance=instance,
            resources=resources,
            run_config=config,
            raise_on_error=False,
        )

    try:
        assert run("prompts").success
        filler = _fill(small_disk, leave=0)  # full once the prompts are written
        result = run("generations")
        assert not result.success
        [failure] = [event.step_failure_data.error for event in result.all_events if event.is_step_failure]
        text = failure.to_string()
        staged = storage / "_staging" / "generations" / "language=da"
        assert "DiskFullError" in text and f"while writing the file {staged}/" in text, text
        assert "free of" in text
        assert not (storage / "generations").exists()
        assert not [path for path in staged.rglob("*") if path.is_file()]  # no half-written chunk
        filler.unlink()
        started = time.perf_counter()
        result = run("generations")
        assert result.success
        generations = pl.read_parquet(storage / "generations" / "language=da" / "data.parquet")
        assert generations.height == 4 * 3 and generations.select("prompt_id", "sample_idx").is_duplicated().sum() == 0
        print(f"reliability: disk full in a step: rerun after freeing space {time.perf_counter() - started:.1f} s")
    finally:
        shutil.rmtree(storage, ignore_errors=True)
        (small_disk / "filler").unlink(missing_ok=True)
