"""The vLLM engine's own process killed mid-generation while the Dagster step lives: `dagster asset materialize`
of prompts + generations (vLLM, 6 chunks of one prompt), the engine's EngineCore process SIGKILLed once the
first chunk is staged. The step fails with `EngineDiedError` naming the engine, the chunks finished before the
kill stay staged and whole, no generations table appears, nothing of the run is left running, and the rerun
reuses the staged chunks and writes the clean run's table.

On a machine with at most 4 cores croco runs the engine inside the step's process (core.models.hardware):
there is no engine process to kill then. The test sets ``VLLM_ENABLE_V1_MULTIPROCESSING=1`` (a user's own value
wins over croco's choice), so the engine runs as on a larger machine or a GPU: an ``EngineCore`` process (and its
``Worker``) below the step's process.
"""

from __future__ import annotations

import os
import signal
import time

import polars as pl
import pytest
from cli_runs import (
    CliRun,
    cli_environment,
    dagster_home,
    descendants,
    left_in_session,
    materialisation_metadata,
    process_title,
    processes,
    staged_chunks,
)
from dagster import DagsterInstance

pytestmark = pytest.mark.system  # kills the engine process of a real run

LANGUAGE = "da"
PROMPTS = 6  # train prompts, one chunk each
SAMPLES = 3  # the tiny profile's samples per prompt
RUN_CONFIG = {"resources": {"settings": {"config": {"chunk_prompts": 1, "max_train_prompts": PROMPTS}}}}
# vLLM's engine in processes of its own (see the module docstring); the tiny profile's backend is vLLM when installed
SEPARATE_ENGINE = {"CROCO_GENERATOR_BACKEND": "vllm", "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
TIMEOUT_S = 600


def _generations(storage) -> pl.DataFrame:
    return pl.read_parquet(storage / "generations" / f"language={LANGUAGE}" / "data.parquet")


def _engine_core(root: int) -> int | None:
    """The pid of vLLM's EngineCore process below ``root`` (vLLM names it ``VLLM::EngineCore``), if any."""
    for pid, _ in descendants(root, processes()):
        if "EngineCore" in process_title(pid):
            return pid
    return None


def test_a_killed_engine_fails_the_step_by_name_and_the_rerun_reuses_its_chunks(tmp_path, tiny_environ):
    storage, home = tmp_path / "croco_data", tmp_path / "dagster_home"
    env = cli_environment(tiny_environ(storage, **SEPARATE_ENGINE), dagster_home(home, [LANGUAGE]))
    run = CliRun(
        env, tmp_path, tmp_path / "killed.log", select="prompts,generations", partition=LANGUAGE, run_config=RUN_CONFIG
    )
    try:
        deadline, engine = time.monotonic() + TIMEOUT_S, None
        while not staged_chunks(storage, LANGUAGE):
            assert run.process.poll() is None, f"the run ended before staging a chunk:\n{run.output()}"
            assert time.monotonic() < deadline, f"no chunk staged in {TIMEOUT_S} s:\n{run.output()}"
            engine = engine or _engine_core(run.pid)
            time.sleep(0.02)
        engine = engine or _engine_core(run.pid)
        assert engine is not None, "no EngineCore process below the run"
        os.kill(engine, signal.SIGKILL)
        killed = time.monotonic()
        staged_at_kill = len(staged_chunks(storage, LANGUAGE))
        returncode = run.process.wait(timeout=TIMEOUT_S)
        failed_after = time.monotonic() - killed
        left = left_in_session(run.pid)
    finally:
        run.kill_group()
    output = run.log.read_text(errors="replace")
    staged = {
        path.name: pl.read_parquet(path) for path in staged_chunks(storage, LANGUAGE)
    }  # every staged chunk whole
    print(
        f"reliability: EngineCore SIGKILLed after {staged_at_kill} of {PROMPTS} chunks: the step failed "
        f"{failed_after:.1f} s later (exit status {returncode}), {len(staged)} chunks stayed staged, "
        f"{len(left)} processes left"
    )
    assert returncode != 0
    assert "EngineDiedError" in output and "RUN_SUCCESS" not in output, output[-6000:]
    # the step's error names the engine and the model, and says what to do
    died = [line for line in output.splitlines() if "The vLLM engine for" in line and "died while generating" in line]
    assert died, output[-6000:]
    assert env["CROCO_POLICY_MODEL"] in died[0] and "EngineCore process" in died[0], died[0]
    assert "run the step again" in output, output[-6000:]
    assert 1 <= len(staged) < PROMPTS
    assert all(chunk.height == SAMPLES for chunk in staged.values())
    assert not (storage / "generations" / f"language={LANGUAGE}").exists()  # no partial table
    assert not [path for path in storage.rglob("*") if path.name.endswith(".tmp")]
    assert left == [], f"processes of the run left behind: {left}"

    # the rerun of the failed asset: the staged chunks are reused, the rest computed
    rerun = CliRun(
        env, tmp_path, tmp_path / "rerun.log", select="generations", partition=LANGUAGE, run_config=RUN_CONFIG
    )
    started = time.monotonic()
    assert rerun.wait(TIMEOUT_S) == 0, rerun.output()
    recovered_in = time.monotonic() - started
    instance = DagsterInstance.from_config(str(home))
    metadata = materialisation_metadata(instance, "generations")
    instance.dispose()
    resumed = _generations(storage)

    clean_storage = tmp_path / "clean"
    clean = CliRun(
        cli_environment(
            tiny_environ(clean_storage, **SEPARATE_ENGINE), dagster_home(tmp_path / "clean_home", [LANGUAGE])
        ),
        tmp_path,
        tmp_path / "clean.log",
        select="prompts,generations",
        partition=LANGUAGE,
        run_config=RUN_CONFIG,
    )
    assert clean.wait(TIMEOUT_S) == 0, clean.output()
    print(
        f"reliability: after the engine's death the rerun took {recovered_in:.0f} s, reused "
        f"{metadata['chunks_reused']} and computed {metadata['chunks_computed']} chunks; the table equals a clean "
        f"run's: {resumed.equals(_generations(clean_storage))}"
    )
    assert (metadata["chunks_reused"], metadata["chunks_computed"]) == (len(staged), PROMPTS - len(staged))
    assert resumed.height == PROMPTS * SAMPLES
    assert not resumed.select("prompt_id", "sample_idx").is_duplicated().any()
    assert resumed.equals(_generations(clean_storage))  # same rows, same texts, same order
    for chunk in staged.values():  # the chunks staged before the kill are in the table as they were
        assert resumed.filter(pl.col("prompt_id") == chunk["prompt_id"][0]).equals(chunk)
    assert not staged_chunks(storage, LANGUAGE)
