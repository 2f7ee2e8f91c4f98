"""Resumable, chunked work: long stages write their output every K prompts to a staging area.

A stage killed mid-way (SIGKILL, a lost GPU node) and started again reads back the chunks that were
finished and computes only the rest, so no row is lost, none is duplicated, and no finished chunk is
recomputed. Chunks live under a folder named by a *fingerprint* of everything that shapes them (model,
settings, input rows): a chunk made under another model or config is never reused. When the stage
has all its rows, the final table is written (atomically, by the IO manager), and only then is the
staging folder removed (``clear_stage``), so a failed final write loses no finished chunk.

    <base>/_staging/<stage>/language=<code>/<fingerprint>/chunk-00000.parquet
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import polars as pl

from croco_pipeline.core.io import atomic, storage

log = logging.getLogger(__name__)


@dataclass
class ChunkProgress:
    total: int
    reused: int = 0
    computed: int = 0
    unreadable: int = 0  # staged chunks that could not be read back, computed again (counted in ``computed``)


def read_staged_chunk(path: str, storage_options: dict | None, progress: ChunkProgress) -> pl.DataFrame | None:
    """A staged chunk, or None when there is none, or when it cannot be read (corrupted on disk after it
    was written whole): such a chunk is computed again, with a warning, rather than failing the stage."""
    if not storage.exists(path, storage_options):
        return None
    try:
        return storage.read_parquet(path, storage_options)
    except storage.UnreadableTableError as error:
        progress.unreadable += 1
        log.warning("computing a staged chunk again: %s", error)
        return None


@dataclass
class StagingArea:
    base: str
    stage: str
    language: str | None
    fingerprint: str
    storage_options: dict | None = None

    @property
    def folder(self) -> str:
        return storage.join(
            storage.partition_dir(storage.join(self.base, "_staging"), self.stage, self.language), self.fingerprint
        )

    def chunk_path(self, index: int) -> str:
        return storage.join(self.folder, f"chunk-{index:05d}.parquet")

    def clear(self) -> None:
        """Remove this stage's staging folder (all fingerprints: stale chunks are of no further use)."""
        clear_stage(self.base, self.stage, self.language, self.storage_options)


def clear_stage(base: str, stage: str, language: str | None, storage_options: dict | None = None) -> None:
    """Remove every staged chunk of ``stage`` for ``language``, once its final table is written."""
    folder = storage.partition_dir(storage.join(base, "_staging"), stage, language)
    with storage.explain_errors(folder, storage_options, "clearing staged chunks in"):
        fs = storage.filesystem(folder, storage_options)
        if fs.exists(folder):
            fs.rm(folder, recursive=True)


def chunks_of(frame: pl.DataFrame, key: str, chunk_size: int) -> Iterator[pl.DataFrame]:
    """Split ``frame`` into chunks of ``chunk_size`` distinct ``key`` values, in first-seen order."""
    if chunk_size < 1:
        raise ValueError(f"chunk size must be at least 1, got {chunk_size}")
    keys = frame[key].unique(maintain_order=True)
    for start in range(0, keys.len(), chunk_size):
        yield frame.filter(pl.col(key).is_in(keys.slice(start, chunk_size).implode()))


def run_chunked(
    frame: pl.DataFrame,
    key: str,
    chunk_size: int,
    staging: StagingArea,
    compute: Callable[[pl.DataFrame, int], pl.DataFrame],
    on_chunk: Callable[[ChunkProgress], None] | None = None,
) -> tuple[pl.DataFrame, ChunkProgress]:
    """Apply ``compute(chunk, chunk_index)`` to every chunk, reusing chunks already in ``staging``.

    Each finished chunk is written atomically before the next starts, so a crash loses at most the
    chunk in progress. Returns the concatenated result in chunk order, and how many chunks were reused.
    """
    chunks = list(chunks_of(frame, key, chunk_size))
    progress = ChunkProgress(total=len(chunks))
    results = []
    for index, chunk in enumerate(chunks):
        path = staging.chunk_path(index)
        staged = read_staged_chunk(path, staging.storage_options, progress)
        if staged is not None:
            results.append(staged)
            progress.reused += 1
        else:
            result = compute(chunk, index)
            atomic.write_parquet(result, path, staging.storage_options)
            results.append(result)
            progress.computed += 1
        if on_chunk:
            on_chunk(progress)
    combined = pl.concat(results, how="vertical") if results else frame.clear()
    return combined, progress
