"""A real crash: `dagster asset materialize` of prompts+generations in its own process group, killed with
SIGKILL once a chunk is staged, then run again. The resumed table is the clean run's table, the chunks
finished before the kill are reused (not recomputed), and nothing is left in the staging area.

Generation uses the transformers backend: it seeds every prompt's samples from the run seed and the
prompt, so a chunk sampled in the resumed run is the same as in a clean run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import polars as pl
import pytest
from cli_runs import CliRun, materialisation_metadata, staged_chunks
from dagster import DagsterInstance, materialize

from croco_pipeline.core.prompts.sets import load_shipped_prompts
from croco_pipeline.core.sampling import samples as samples_module  # what each generation chunk calls
from croco_pipeline.definitions import ALL_ASSETS, build_definitions
from croco_pipeline.partitions import language_partitions

LANGUAGE = "da"
PROMPTS = 6  # train prompts, one chunk each
SETTINGS = {"chunk_prompts": 1, "max_train_prompts": PROMPTS}
TIMEOUT_S = 300


# Added to the tiny environment (the `tiny_environ` fixture): the backend whose samples are seeded per prompt.
TRANSFORMERS = {"CROCO_GENERATOR_BACKEND": "transformers"}


def _run_config(**settings) -> dict:
    # Only the changed fields: the tiny profile's other settings stay (they are the fields' defaults).
    return {"resources": {"settings": {"config": {**SETTINGS, **settings}}}}


# `dagster asset materialize` of prompts + generations (cli_runs.CliRun)
RUN = {"select": "prompts,generations", "partition": LANGUAGE, "run_config": _run_config()}


def _materialize_in_process(environ: dict, run_config: dict, instance: DagsterInstance | None = None):
    """prompts + generations for LANGUAGE in this process; returns (result, generations metadata)."""
    if instance is None:
        instance = DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(language_partitions.name, [LANGUAGE])
    result = materialize(
        ALL_ASSETS,
        selection=["prompts", "generations"],
        partition_key=LANGUAGE,
        instance=instance,
        resources=build_definitions(environ=environ).resources,
        run_config=run_config,
        raise_on_error=False,
    )
    metadata = {}
    if result.success:
        [materialization] = result.asset_materializations_for_node("generations")
        metadata = {key: value.value for key, value in materialization.metadata.items()}
    return result, metadata


def _generations(storage: Path) -> pl.DataFrame:
    return pl.read_parquet(storage / "generations" / f"language={LANGUAGE}" / "data.parquet")


def _staged_files(storage: Path) -> list[Path]:
    return [path for path in (storage / "_staging").rglob("*") if path.is_file()]


@pytest.fixture(scope="module")
def crash_and_resume(tmp_path_factory, tiny_environ):
    """Kill a real CLI run after its first staged chunk, resume it with the CLI, and run a clean one."""
    root = tmp_path_factory.mktemp("crash")
    storage, home = root / "croco_data", root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("")
    env = {key: value for key, value in os.environ.items() if not key.startswith("CROCO_") or key == "CROCO_CACHE"}
    env.update(tiny_environ(storage, **TRANSFORMERS), DAGSTER_HOME=str(home))
    instance = DagsterInstance.from_config(str(home))
    instance.add_dynamic_partitions(language_partitions.name, [LANGUAGE])

    killed = CliRun(env, root, root / "killed.log", **RUN)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not staged_chunks(storage, LANGUAGE):
            assert killed.process.poll() is None, f"the run ended before staging a chunk:\n{killed.output()}"
            assert time.monotonic() < deadline, f"no chunk staged in {TIMEOUT_S} s:\n{killed.output()}"
            time.sleep(0.02)
    finally:
        killed.kill_group()
    staged = {path.name: pl.read_parquet(path) for path in staged_chunks(storage, LANGUAGE)}
    state_after_kill = {
        "staged": staged,
        "final_exists": (storage / "generations" / f"language={LANGUAGE}" / "data.parquet").exists(),
        "killed_log": killed.log.read_text(errors="replace"),
    }

    resumed = CliRun(env, root, root / "resumed.log", **RUN)
    started = time.monotonic()
    returncode = resumed.wait(TIMEOUT_S)
    assert returncode == 0, resumed.output()
    metadata = materialisation_metadata(instance, "generations")
    print(
        f"reliability: SIGKILL mid-generation after {len(staged)} of {PROMPTS} chunks: the resumed run took "
        f"{time.monotonic() - started:.0f} s and reused {metadata['chunks_reused']} chunks"
    )
    instance.dispose()

    clean_storage = root / "clean"
    result, clean_metadata = _materialize_in_process(tiny_environ(clean_storage, **TRANSFORMERS), _run_config())
    assert result.success
    return {
        "storage": storage,
        "clean": _generations(clean_storage),
        "clean_metadata": clean_metadata,
        "metadata": metadata,
        **state_after_kill,
    }


@pytest.mark.system  # kills a run
def test_the_kill_happened_mid_run(crash_and_resume):
    assert not crash_and_resume["final_exists"]
    assert 1 <= len(crash_and_resume["staged"]) < PROMPTS
    assert "RUN_SUCCESS" not in crash_and_resume["killed_log"]


@pytest.mark.system  # kills a run
def test_the_resumed_table_is_the_clean_runs_table(crash_and_resume):
    resumed, clean = _generations(crash_and_resume["storage"]), crash_and_resume["clean"]
    assert resumed.height == PROMPTS * 3  # tiny profile: 3 samples per prompt
    assert resumed.select("prompt_id", "sample_idx").is_duplicated().sum() == 0
    assert resumed.equals(clean)  # same rows, same texts, same order
    # the chunks staged before the kill are in the final table as they were
    for index, (name, chunk) in enumerate(sorted(crash_and_resume["staged"].items())):
        assert name == f"chunk-{index:05d}.parquet"
        prompt_id = chunk["prompt_id"][0]
        assert resumed.filter(pl.col("prompt_id") == prompt_id).equals(chunk)


@pytest.mark.system  # kills a run
def test_chunks_finished_before_the_kill_are_reused_not_recomputed(crash_and_resume):
    staged = len(crash_and_resume["staged"])
    metadata = crash_and_resume["metadata"]
    assert metadata["chunks_reused"] == staged
    assert metadata["chunks_computed"] == PROMPTS - staged
    assert (
        crash_and_resume["clean_metadata"]["chunks_reused"],
        crash_and_resume["clean_metadata"]["chunks_computed"],
    ) == (0, PROMPTS)


@pytest.mark.system  # kills a run
def test_the_staging_area_is_empty_after_the_resumed_run(crash_and_resume):
    storage = crash_and_resume["storage"]
    assert _staged_files(storage) == []
    assert not [path for path in storage.rglob("*") if path.name.endswith(".tmp")]


@pytest.mark.system  # kills a run
def test_rematerialising_a_partition_replaces_it(crash_and_resume, tiny_environ):
    storage = crash_and_resume["storage"]
    before = _generations(storage)
    result, metadata = _materialize_in_process(tiny_environ(storage, **TRANSFORMERS), _run_config())
    assert result.success
    assert (metadata["chunks_reused"], metadata["chunks_computed"]) == (0, PROMPTS)  # nothing left to reuse
    after = _generations(storage)
    assert after.height == before.height == PROMPTS * 3  # replaced, not appended
    assert after.equals(before)
    assert sorted(path.name for path in (storage / "generations" / f"language={LANGUAGE}").iterdir()) == [
        "data.parquet"
    ]


def test_a_chunk_made_under_another_config_is_never_reused(tmp_path, tiny_policy_path, tiny_environ, monkeypatch):
    """Crash (in process) after two chunks under config A, then under B (other max_new_tokens) and C
    (other model): each computes its chunks afresh in its own fingerprint folder; A resumed reuses its two."""
    storage = tmp_path / "croco_data"
    other_model = tmp_path / "same-weights-other-path"
    other_model.symlink_to(tiny_policy_path, target_is_directory=True)
    settings = {"max_train_prompts": 4}
    sampled: list[str] = []
    crash_at = {"p": None}
    real_sample_answers = samples_module.sample_answers

    def sample_answers(generator, chunk, *args, **kwargs):
        [prompt_id] = chunk["prompt_id"].to_list()
        if prompt_id == crash_at["p"]:
            raise RuntimeError("simulated crash")
        sampled.append(prompt_id)
        return real_sample_answers(generator, chunk, *args, **kwargs)

    monkeypatch.setattr(samples_module, "sample_answers", sample_answers)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(language_partitions.name, [LANGUAGE])

    train_ids = load_shipped_prompts(LANGUAGE).filter(pl.col("split") == "train")["prompt_id"].sort().to_list()

    def run(policy: Path, crash_on_third: bool, **overrides):
        sampled.clear()
        crash_at["p"] = train_ids[2] if crash_on_third else None
        environ = tiny_environ(storage, **TRANSFORMERS, CROCO_POLICY_MODEL=policy)
        return _materialize_in_process(environ, _run_config(**settings, **overrides), instance)

    def folders() -> list[str]:
        return sorted(path.name for path in (storage / "_staging" / "generations" / f"language={LANGUAGE}").iterdir())

    result, _ = run(tiny_policy_path, crash_on_third=False)  # a clean run under config A
    assert result.success
    full_a = _generations(storage)
    result, _ = run(tiny_policy_path, crash_on_third=True)
    assert not result.success and len(sampled) == 2
    [fingerprint_a] = folders()

    result, _ = run(tiny_policy_path, crash_on_third=True, max_new_tokens=6)  # config B
    assert not result.success and len(sampled) == 2  # computed its first two chunks, reused none of A's
    [fingerprint_b] = set(folders()) - {fingerprint_a}

    result, metadata = run(other_model, crash_on_third=False)  # config C: another model path
    assert result.success
    assert (metadata["chunks_reused"], metadata["chunks_computed"]) == (0, 4) and len(sampled) == 4
    assert _staged_files(storage) == []  # a finished run clears every fingerprint of the stage

    # the same config does reuse: A crashes again, then resumes from its own two chunks
    run(tiny_policy_path, crash_on_third=True)
    assert folders() == [fingerprint_a]
    result, metadata = run(tiny_policy_path, crash_on_third=False)
    assert result.success
    assert (metadata["chunks_reused"], metadata["chunks_computed"]) == (2, 2) and len(sampled) == 2
    assert _generations(storage).equals(full_a)
    assert fingerprint_a != fingerprint_b
