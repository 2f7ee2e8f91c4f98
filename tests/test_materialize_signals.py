"""SIGTERM and SIGINT to a `dagster asset materialize` run in the middle of a model-loading step: prompts +
generations (vLLM, 6 chunks of one prompt), the signal sent to the CLI process alone (as `kill PID` does) once
the first chunk is staged. The CLI exits within 15 s, leaving no process behind (engines included); the rerun of
the asset not yet materialised resumes: `prompts` is not run again, the staged chunks are reused, and the table
comes out whole, without duplicates.

The engine runs in processes of its own (``VLLM_ENABLE_V1_MULTIPROCESSING=1``, as on a machine with more than 4
cores or a GPU; on a smaller one croco runs it inside the step's process), so there are engine processes that
could be left behind.
"""

from __future__ import annotations

import signal
import time

import polars as pl
import pytest
from cli_runs import (
    CliRun,
    alive,
    cli_environment,
    dagster_home,
    descendants,
    left_in_session,
    materialisation_metadata,
    process_title,
    processes,
    staged_chunks,
)
from dagster import AssetKey, DagsterInstance

pytestmark = pytest.mark.system  # signals real runs

STOP_WITHIN_S = 15  # the engine's processes, and the CLI after Dagster has written the step's and the run's failure
LANGUAGE = "da"
PROMPTS = 24  # train prompts, one chunk each
SAMPLES = 8
# Long enough answers and enough chunks that generating goes on for seconds after the first chunk: a loaded machine
# can take seconds to deliver the signal to the step, and the tiny model writes a short chunk in a tenth of one.
RUN_CONFIG = {
    "resources": {
        "settings": {
            "config": {
                "chunk_prompts": 1,
                "max_train_prompts": PROMPTS,
                "samples_per_prompt": SAMPLES,
                "max_new_tokens": 256,
            }
        }
    }
}
SEPARATE_ENGINE = {"CROCO_GENERATOR_BACKEND": "vllm", "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
TIMEOUT_S = 600


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_step_stops_the_run_and_the_rerun_resumes(signum, tmp_path, tiny_environ):
    storage, home = tmp_path / "croco_data", dagster_home(tmp_path / "dagster_home", [LANGUAGE])
    env = cli_environment(tiny_environ(storage, **SEPARATE_ENGINE), home)
    run = CliRun(
        env, tmp_path, tmp_path / "run.log", select="prompts,generations", partition=LANGUAGE, run_config=RUN_CONFIG
    )
    seen: set[tuple[int, str]] = set()
    titles: dict[int, str] = {}  # the latest seen: vLLM renames its processes once they run

    def look() -> None:
        found = descendants(run.pid, processes())
        titles.update((pid, title) for pid, _ in found if (title := process_title(pid)))
        seen.update(found)

    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not staged_chunks(storage, LANGUAGE):
            assert run.process.poll() is None, f"the run ended before staging a chunk:\n{run.output()}"
            assert time.monotonic() < deadline, f"no chunk staged in {TIMEOUT_S} s:\n{run.output()}"
            look()
            time.sleep(0.05)
        look()
        run.process.send_signal(signum)
        signalled = time.monotonic()
        engines_gone_after = None
        while run.process.poll() is None and time.monotonic() - signalled < STOP_WITHIN_S + 30:
            look()
            engines = {(pid, started) for pid, started in seen if titles.get(pid, "").startswith("VLLM::")}
            if engines_gone_after is None and not alive(engines):
                engines_gone_after = time.monotonic() - signalled
            time.sleep(0.05)
        stopped_after = time.monotonic() - signalled
        left = left_in_session(run.pid) + [str(pid) for pid in alive(seen)]
    finally:
        run.kill_group()
    engines = sorted(title for title in titles.values() if title.startswith("VLLM::"))
    staged = len(staged_chunks(storage, LANGUAGE))
    print(
        f"reliability: {signum.name} to dagster asset materialize mid-generations: engine processes gone in "
        f"{engines_gone_after or stopped_after:.1f} s, the CLI exited in {stopped_after:.1f} s "
        f"(status {run.process.returncode}), {len(seen)} child processes seen ({', '.join(engines)}), "
        f"{len(left)} left; {staged} of {PROMPTS} chunks staged"
    )
    output = run.log.read_text(errors="replace")
    assert stopped_after < STOP_WITHIN_S, output[-6000:]
    assert run.process.returncode != 0 and "RUN_SUCCESS" not in output
    assert "VLLM::EngineCore" in engines, titles.values()  # the engine had processes of its own
    assert left == [], f"processes left behind: {left}"
    for path in storage.rglob("*.parquet"):  # nothing half-written: every table and chunk whole
        pl.read_parquet(path)
    assert not [path for path in storage.rglob("*") if path.name.endswith(".tmp")]
    assert staged >= 1
    # the step did not finish: no table (on a machine slow to deliver the signal, every chunk may be staged)
    assert not (storage / "generations" / f"language={LANGUAGE}").exists()

    # the rerun: the asset not materialised yet, the staged chunks reused
    rerun = CliRun(
        env, tmp_path, tmp_path / "rerun.log", select="generations", partition=LANGUAGE, run_config=RUN_CONFIG
    )
    started = time.monotonic()
    assert rerun.wait(TIMEOUT_S) == 0, rerun.output()
    recovered_in = time.monotonic() - started
    with DagsterInstance.from_config(str(home)) as instance:
        metadata = materialisation_metadata(instance, "generations")
        prompts_materialised = len(instance.fetch_materializations(AssetKey("prompts"), limit=10).records)
    print(
        f"reliability: {signum.name}: the rerun took {recovered_in:.0f} s, reused {metadata['chunks_reused']} and "
        f"computed {metadata['chunks_computed']} chunks; prompts materialised {prompts_materialised} time(s) in all"
    )
    assert prompts_materialised == 1  # finished before the signal, not redone
    assert (metadata["chunks_reused"], metadata["chunks_computed"]) == (staged, PROMPTS - staged)
    generations = pl.read_parquet(storage / "generations" / f"language={LANGUAGE}" / "data.parquet")
    assert generations.height == PROMPTS * SAMPLES
    assert not generations.select("prompt_id", "sample_idx").is_duplicated().any()
    assert not staged_chunks(storage, LANGUAGE)
