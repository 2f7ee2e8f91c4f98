"""Chunked, resumable stages: finished chunks are reused, never recomputed or duplicated."""

import polars as pl
import pytest

from croco_pipeline.core.execution.staging import StagingArea, chunks_of, run_chunked
from croco_pipeline.core.io.hashing import config_hash
from croco_pipeline.core.models.lifetime import OpenOnFirstUse


def _prompts(n=10):
    return pl.DataFrame({"prompt_id": [f"p{i:02d}" for i in range(n)], "prompt": [f"question {i}" for i in range(n)]})


def _double(chunk: pl.DataFrame, index: int) -> pl.DataFrame:
    return chunk.with_columns(pl.col("prompt").str.to_uppercase().alias("answer"), pl.lit(index).alias("chunk"))


class Crash(RuntimeError):
    pass


def test_chunks_follow_first_seen_key_order():
    frame = pl.DataFrame({"prompt_id": ["b", "b", "a", "c", "a"], "x": [1, 2, 3, 4, 5]})
    chunks = list(chunks_of(frame, "prompt_id", 2))
    assert [chunk["x"].to_list() for chunk in chunks] == [[1, 2, 3, 5], [4]]
    with pytest.raises(ValueError, match="at least 1"):
        list(chunks_of(frame, "prompt_id", 0))


def test_crash_then_resume_gives_the_clean_result_without_recomputing(tmp_path):
    prompts = _prompts(10)
    clean, _ = run_chunked(prompts, "prompt_id", 3, StagingArea(str(tmp_path / "clean"), "gen", "da", "f"), _double)

    staging = StagingArea(str(tmp_path / "crashy"), "gen", "da", "f")
    calls = []

    def crash_in_third_chunk(chunk, index):
        calls.append(index)
        if index == 2:
            raise Crash
        return _double(chunk, index)

    with pytest.raises(Crash):
        run_chunked(prompts, "prompt_id", 3, staging, crash_in_third_chunk)
    calls.clear()
    resumed, progress = run_chunked(prompts, "prompt_id", 3, staging, lambda c, i: (calls.append(i), _double(c, i))[1])
    assert calls == [2, 3]  # chunks 0 and 1 were finished before the crash
    assert (progress.reused, progress.computed, progress.total) == (2, 2, 4)
    assert resumed.equals(clean)
    assert resumed["prompt_id"].n_unique() == resumed.height == 10


def test_other_config_or_inputs_never_reuse_chunks(tmp_path):
    prompts = _prompts(4)
    base = config_hash({"model": "a", "temperature": 1.0}, prompts)
    assert config_hash({"temperature": 1.0, "model": "a"}, prompts) == base  # key order does not matter
    assert config_hash({"model": "b", "temperature": 1.0}, prompts) != base
    edited = prompts.with_columns(
        pl.when(pl.col("prompt_id") == "p01").then(pl.lit("edited")).otherwise(pl.col("prompt")).alias("prompt")
    )
    assert config_hash({"model": "a", "temperature": 1.0}, edited) != base


def test_clear_removes_staged_chunks(tmp_path):
    staging = StagingArea(str(tmp_path), "gen", "da", "f")
    run_chunked(_prompts(4), "prompt_id", 2, staging, _double)
    assert (tmp_path / "_staging" / "gen" / "language=da" / "f" / "chunk-00001.parquet").is_file()
    staging.clear()
    assert not (tmp_path / "_staging" / "gen" / "language=da").exists()


def test_model_is_opened_only_when_a_chunk_needs_it(tmp_path):
    opened = []

    class Model:
        def close(self):
            opened.append("closed")

    staging = StagingArea(str(tmp_path), "gen", "da", "f")
    for expected in (["open", "closed"], []):
        opened.clear()
        with OpenOnFirstUse(lambda: (opened.append("open"), Model())[1]) as model:
            run_chunked(_prompts(4), "prompt_id", 2, staging, lambda c, i: (model.get(), _double(c, i))[1])
        assert opened == expected  # the second run finds every chunk staged and never opens the model
