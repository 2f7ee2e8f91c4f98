"""The code location loads, in Python and under `dagster definitions validate`."""

import os
import subprocess
import sys
from pathlib import Path

from croco_pipeline.definitions import build_definitions, defs

EXPECTED_ASSETS = {
    "prompts", "generations", "reward_scores", "preference_pairs", "dpo_checkpoint", "evaluation",
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
        cwd=root, capture_output=True, text=True, env={**os.environ, "DAGSTER_HOME": ""},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
