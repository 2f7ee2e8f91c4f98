"""The README's variable table is the one croco reads its environment from, and no module reads
``os.environ`` besides the environment module (and the places that set variables for vLLM)."""

from __future__ import annotations

import re
from pathlib import Path

from croco_pipeline import envs

REPO = Path(__file__).resolve().parents[1]


def test_the_readme_lists_every_environment_variable_as_croco_env_prints_it() -> None:
    assert envs.variables_table() in (REPO / "README.md").read_text()


def test_only_the_environment_module_reads_the_environment() -> None:
    sets = re.compile(r"os\.environ(\[[^\]]+\]\s*=[^=]|\.setdefault\()")  # setting a variable for a library is fine
    readers = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sorted((REPO / "croco_pipeline").rglob("*.py"))
        if path.name != "envs.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "os.environ" in line and not sets.search(line)
    ]
    # generators.py checks vLLM's own variables before it sets them for the engine
    assert [reader for reader in readers if "core/models/generators.py" not in reader] == []
