"""What several benchmark scripts share: the machine-load line they print, and the ``--model`` values."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def print_load(when: str) -> None:
    """One line on the interpreter, the CPUs and the load average: figures from a busy machine say so."""
    print(
        f"[{when}] python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} (1, 5, 15 min)",
        flush=True,
    )


def resolve_model_arg(spec: str, folder: Path) -> str:
    """``--model``: ``embedded`` (SmolLM2-135M-Instruct), ``tiny`` (the tests' tiny random policy, built
    in ``folder``) or a model folder."""
    if spec == "embedded":
        from croco_pipeline.core.models.specs import EMBEDDED_POLICY, resolve_model

        return resolve_model(EMBEDDED_POLICY)
    if spec == "tiny":
        sys.path.insert(0, str(REPO_ROOT / "tests"))  # the tests' tiny-model builders
        from tiny_models import build_tiny_policy

        return str(build_tiny_policy(folder / "tiny-policy"))
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise SystemExit(f"--model: {spec!r} is neither 'embedded', 'tiny' nor a model folder")
    return str(path.resolve())
