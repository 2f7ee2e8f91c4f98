"""The code location loads, in Python, under `dagster definitions validate` and under `dg check defs`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from croco_pipeline.definitions import build_definitions, defs

EXPECTED_ASSETS = {
    "prompts",
    "generations",
    "reward_scores",
    "preference_pairs",
    "dpo_checkpoint",
    "evaluation",
    "evaluation_judgments",
}


def test_definitions_hold_the_six_stages_partitioned_by_language():
    repository = defs.get_repository_def()
    keys = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    assert EXPECTED_ASSETS <= keys
    for key in repository.asset_graph.get_all_asset_keys():
        node = repository.asset_graph.get(key)
        if key.to_user_string() in EXPECTED_ASSETS:
            assert node.partitions_def.name == "language"
    assert defs.resolve_job_def("croco_job") is not None


def test_every_profile_builds():
    for profile in ["embedded", "paper", "tiny"]:
        build_definitions(profile=profile, environ={})


def test_dagster_definitions_validate_accepts_the_workspace():
    root = Path(__file__).resolve().parents[1]
    dagster = Path(sys.executable).with_name("dagster")
    completed = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "DAGSTER_HOME": ""},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_dg_check_defs_accepts_the_project():
    root = Path(__file__).resolve().parents[1]
    dg = Path(sys.executable).with_name("dg")
    environ = {key: value for key, value in os.environ.items() if key != "DAGSTER_HOME"}
    completed = subprocess.run(
        [str(dg), "check", "defs"],
        cwd=root,
        capture_output=True,
        text=True,
        env={**environ, "VIRTUAL_ENV": sys.prefix},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "All definitions loaded successfully" in completed.stdout + completed.stderr


def test_slurm_requests_come_from_the_profile_and_the_environment(tmp_path):
    from croco_pipeline import envs
    from croco_pipeline.core.execution.slurm import batch_script

    environ = {
        "CROCO_EXECUTOR": "slurm",
        "CROCO_PROFILE": "paper",
        "CROCO_SLURM_PARTITION": "gpu",
        "CROCO_SLURM_STEPS": '{"training": {"time": "2-00:00:00", "extra_args": ["--account=nlp"]}}',
        "CROCO_SLURM_WORK_DIR": str(tmp_path / "jobs"),
    }
    compute = build_definitions(environ=environ).resources["compute"]
    assert compute.slurm and compute.slurm_work_dir == str(tmp_path / "jobs")
    training = compute.slurm_steps["training"]
    assert (training.partition, training.gpus, training.mem, training.time, training.extra_args) == (
        "gpu",
        1,
        "128G",
        "2-00:00:00",
        ["--account=nlp"],
    )
    generation = compute.slurm_steps["generation"]
    assert (generation.partition, generation.time) == ("gpu", "24:00:00")
    script = batch_script(tmp_path, training.spec(), "croco-training", tmp_path).splitlines()
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus=1",
        "#SBATCH --mem=128G",
        "#SBATCH --time=2-00:00:00",
        "#SBATCH --account=nlp",
        "#SBATCH --export=ALL",
        "#SBATCH --job-name=croco-training",
    ):
        assert line in script
    assert script[-1].endswith(f"-m croco_pipeline.core.execution.slurm_job {tmp_path}")
    assert not build_definitions(environ={}).resources["compute"].slurm  # the default path is untouched
    with pytest.raises(ValueError, match="not known"):
        envs.executor_name({"CROCO_EXECUTOR": "lsf"})
    with pytest.raises(ValueError, match="CROCO_SLURM_STEPS must be a JSON object"):
        envs.slurm_settings({"CROCO_SLURM_STEPS": "[1]"})
