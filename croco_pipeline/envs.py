"""Every environment variable croco reads, in one place, each with its reader and its help.

Only the standard library is imported here, so any module (core included) can read the environment
without pulling in Dagster or torch, and nothing imports back into this module. ``croco env`` prints the
table below; the README's table is checked against it by a test. Other modules never read
``os.environ`` themselves: they call :func:`get` or the helpers at the end (setting a variable for a
library, e.g. vLLM's, is their business).

Every reader takes an optional ``environ`` mapping (default: ``os.environ``), so tests and callers can
pass their own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_STORAGE = "./croco_data"
DEFAULT_TRACKING_DIR = "tracking"  # under the project folder (where croco runs), beside croco_data
DEFAULT_SLURM_WORK_DIR = ".croco_slurm"
# Each kind of model-loading step has its own SLURM request (profile "slurm" section, CROCO_SLURM_STEPS).
SLURM_STEP_KINDS = ("generation", "scoring", "training", "evaluation")
EXECUTORS = ("k8s", "slurm")


def _text(value: str | None) -> str | None:
    return value or None


def _int(value: str | None) -> int | None:
    return int(value) if value else None


def _float(value: str | None) -> float | None:
    return float(value) if value else None


@dataclass(frozen=True)
class Variable:
    name: str
    help: str
    read: Callable[[str | None], Any] = _text
    # (resource, field) when the variable overrides one setting of the profile's resources
    setting: tuple[str, str] | None = None


VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in [
        Variable(
            "CROCO_PROFILE", "embedded (laptop, default) | paper (the paper's models and hyperparameters) | tiny"
        ),
        Variable("CROCO_STORAGE", f"storage base: {DEFAULT_STORAGE} (default) or s3://bucket/prefix"),
        Variable("CROCO_POLICY_MODEL", "a local folder or Hugging Face id of the policy", setting=("policy", "model")),
        Variable(
            "CROCO_GENERATOR_BACKEND",
            "auto (vLLM when installed) | vllm | transformers",
            setting=("policy", "backend"),
        ),
        Variable(
            "CROCO_REWARD_BACKEND",
            "sequence_classifier (any HF reward model) | language_fidelity",
            setting=("reward", "backend"),
        ),
        Variable(
            "CROCO_REWARD_MODEL", "a local folder or Hugging Face id of the reward model", setting=("reward", "model")
        ),
        Variable(
            "CROCO_JUDGE_MODEL",
            "the LLM judge for open-ended evaluation (when settings.judge is llm; default: the policy)",
            setting=("judge_model", "model"),
        ),
        Variable(
            "CROCO_TRANSLATOR_MODEL",
            "the machine translator for languages the prompts lack (default: the profile's, else the policy)",
            setting=("translator", "model"),
        ),
        Variable(
            "CROCO_PROMPT_FILE",
            "your prompts: JSONL, CSV or Parquet with prompt_id, language, prompt (or messages), optional split; "
            "local or s3://",
            setting=("settings", "prompt_file"),
        ),
        Variable(
            "CROCO_PROMPT_DATASET",
            "your prompts as a Hugging Face dataset id, a folder written by save_to_disk or a JSONL file of "
            "conversations (messages); English-only sources are translated",
            setting=("settings", "prompt_dataset"),
        ),
        Variable(
            "CROCO_KEEP_MODELS_LOADED",
            "1: one policy engine shared by all steps of one process (what croco demo does)",
            setting=("policy", "keep_loaded"),
        ),
        Variable(
            "CROCO_ROUNDS",
            "rounds of CroCo in the asset graph (default 1: round 0 only; 2 adds round1_* assets and round1_job)",
            _int,
        ),
        Variable(
            "CROCO_ROUND_POLICY",
            "which checkpoint of round k-1 a later round samples from: language (default: each language's own) | "
            "multilingual (the one multilingual checkpoint) | language,multilingual (both chains)",
        ),
        Variable(
            "CROCO_TRACKER",
            "trackio (default) | mlflow (a local SQLite file) | wandb | none: where training and evaluation report",
            setting=("settings", "tracker"),
        ),
        Variable("CROCO_TRACKING_DIR", f"local folder of the tracker's runs (default ./{DEFAULT_TRACKING_DIR})"),
        Variable(
            "CROCO_EUROEVAL_PYTHON",
            "the Python of EuroEval's own environment (scripts/euroeval_env.sh)",
            setting=("settings", "euroeval_python"),
        ),
        Variable("CROCO_CACHE", "folder for converted models (default ~/.cache/croco)"),
        Variable(
            "CROCO_S3_ENDPOINT_URL",
            "S3 endpoint (MinIO, moto, ...); else AWS_ENDPOINT_URL, else AWS itself",
        ),
        Variable(
            "CROCO_RAY_WORKERS", "Ray actors for generation and scoring (0, default: in the step's process)", _int
        ),
        Variable("CROCO_RAY_GPUS_PER_WORKER", "GPUs per Ray actor (default: 1 when the cluster has GPUs)", _float),
        Variable(
            "CROCO_EXECUTOR",
            "unset: Dagster's default executor | k8s: every step in a pod of its own | slurm: every "
            "model-loading step's work in a SLURM job",
        ),
        Variable("CROCO_K8S_STEP_GPUS", "GPUs for each model-loading step's pod under CROCO_EXECUTOR=k8s", _int),
        Variable(
            "CROCO_SLURM_PARTITION", "SLURM partition of every job under CROCO_EXECUTOR=slurm (default: the cluster's)"
        ),
        Variable(
            "CROCO_SLURM_STEPS",
            'per-step SLURM requests as JSON, e.g. {"training": {"gpus": 1, "mem": "64G", "time": "12:00:00"}}; '
            "keys generation, scoring, training, evaluation or a step's own name; fields partition, gpus, cpus, "
            "mem, time, extra_args",
        ),
        Variable(
            "CROCO_SLURM_WORK_DIR",
            "job folders (call, result, job log) on a file system the nodes share "
            f"(default ./{DEFAULT_SLURM_WORK_DIR})",
        ),
        Variable("CROCO_SLURM_POLL_SECONDS", "how often the step asks SLURM for its job's state (default 2)", _float),
        # Standard variables of other tools that croco reads too.
        Variable("AWS_ACCESS_KEY_ID", "S3 credentials (with AWS_SECRET_ACCESS_KEY); never printed or logged"),
        Variable("AWS_SECRET_ACCESS_KEY", "S3 credentials; never printed or logged"),
        Variable("AWS_ENDPOINT_URL", "the standard S3 endpoint variable (CROCO_S3_ENDPOINT_URL wins)"),
        Variable("DAGSTER_HOME", "the Dagster instance folder (croco demo: ./.dagster_home)"),
        Variable("WORLD_SIZE", "devices training together, as torchrun/accelerate set it (default 1)", _int),
        Variable("SLURM_JOB_ID", "set by SLURM inside a job"),
        Variable("RAY_ADDRESS", "the Ray cluster to join (else Ray starts a local one)"),
    ]
}


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def get(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """The value of one variable, read by its reader (None when it is unset or empty)."""
    variable = VARIABLES[name]
    try:
        return variable.read(_environ(environ).get(name))
    except ValueError as error:
        raise ValueError(f"{name}={_environ(environ).get(name)!r} is not valid: {error}") from None


def setting_overrides(environ: Mapping[str, str] | None = None) -> dict[tuple[str, str], str]:
    """(resource, field) -> value for every set variable that overrides one setting of the profile."""
    return {
        variable.setting: _environ(environ)[name]
        for name, variable in VARIABLES.items()
        if variable.setting and _environ(environ).get(name)
    }


def profile_name(environ: Mapping[str, str] | None = None) -> str:
    return get("CROCO_PROFILE", environ) or "embedded"


def storage_base(environ: Mapping[str, str] | None = None) -> str:
    """Where the data lives: ``CROCO_STORAGE`` or ``./croco_data``."""
    return get("CROCO_STORAGE", environ) or DEFAULT_STORAGE


def tracking_dir(environ: Mapping[str, str] | None = None) -> str:
    """Where the tracker keeps its runs: ``CROCO_TRACKING_DIR`` or ``./tracking``, made absolute so every step
    of a run, in whatever process, writes to the same folder."""
    return str(Path(get("CROCO_TRACKING_DIR", environ) or DEFAULT_TRACKING_DIR).expanduser().absolute())


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Folder for converted models and other derived files: ``$CROCO_CACHE`` or ``~/.cache/croco``."""
    value = get("CROCO_CACHE", environ)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "croco"


def s3_endpoint(environ: Mapping[str, str] | None = None) -> str | None:
    """The S3 endpoint: ``CROCO_S3_ENDPOINT_URL``, else the standard ``AWS_ENDPOINT_URL``, else AWS itself."""
    return get("CROCO_S3_ENDPOINT_URL", environ) or get("AWS_ENDPOINT_URL", environ)


# Throttling (503 SlowDown), 500s and dropped connections are retried with exponential back-off and jitter
# (botocore's "standard" mode: a random wait up to 1 s, 2 s, 4 s, ... capped at 20 s), 6 attempts in all
# per request. An object is written by one PUT (or a multipart upload completed in one call), so a retry
# never leaves half of one, and writing the same key again leaves one object.
S3_RETRIES = {"max_attempts": 6, "mode": "standard"}


def s3_options(environ: Mapping[str, str] | None = None) -> dict:
    """s3fs options from the environment: endpoint and credentials, and the retry policy
    (``S3_RETRIES``). Never log the result."""
    options: dict = {"config_kwargs": {"retries": dict(S3_RETRIES)}}
    endpoint = s3_endpoint(environ)
    if endpoint:
        options["client_kwargs"] = {"endpoint_url": endpoint}
    key = get("AWS_ACCESS_KEY_ID", environ)
    if key:
        options["key"] = key
        options["secret"] = get("AWS_SECRET_ACCESS_KEY", environ) or ""
    return options


def ray_settings(environ: Mapping[str, str] | None = None) -> dict:
    """``ComputeResource`` fields: ``CROCO_RAY_WORKERS`` (default 0) and ``CROCO_RAY_GPUS_PER_WORKER``."""
    return {
        "num_workers": get("CROCO_RAY_WORKERS", environ) or 0,
        "gpus_per_worker": get("CROCO_RAY_GPUS_PER_WORKER", environ),
    }


def executor_name(environ: Mapping[str, str] | None = None) -> str | None:
    """``CROCO_EXECUTOR``: None (Dagster's default), ``k8s`` or ``slurm``."""
    name = get("CROCO_EXECUTOR", environ)
    if name not in (None, *EXECUTORS):
        raise ValueError(f"CROCO_EXECUTOR={name!r} is not known; leave it unset or use 'k8s' or 'slurm'.")
    return name


def k8s_step_gpus(environ: Mapping[str, str] | None = None) -> int:
    """``CROCO_K8S_STEP_GPUS``: GPUs of each model-loading step's pod (0: no GPU tags)."""
    return get("CROCO_K8S_STEP_GPUS", environ) or 0


def slurm_settings(environ: Mapping[str, str] | None = None, profile_steps: Mapping[str, dict] | None = None) -> dict:
    """Under ``CROCO_EXECUTOR=slurm``: the job folder, the poll interval and one SLURM request per step
    kind: the profile's ``slurm`` section, then ``CROCO_SLURM_PARTITION`` for every kind, then the fields
    ``CROCO_SLURM_STEPS`` (JSON) names."""
    steps = {kind: dict(request) for kind, request in (profile_steps or {}).items()}
    partition = get("CROCO_SLURM_PARTITION", environ)
    if partition:
        for kind in SLURM_STEP_KINDS:
            steps.setdefault(kind, {})["partition"] = partition
    raw = get("CROCO_SLURM_STEPS", environ)
    if raw:
        try:
            overrides = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValueError(f"CROCO_SLURM_STEPS is not valid JSON: {error}") from None
        if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
            raise ValueError('CROCO_SLURM_STEPS must be a JSON object of objects, e.g. {"training": {"gpus": 1}}')
        for kind, request in overrides.items():
            steps.setdefault(kind, {}).update(request)
    work_dir = get("CROCO_SLURM_WORK_DIR", environ) or DEFAULT_SLURM_WORK_DIR
    poll = get("CROCO_SLURM_POLL_SECONDS", environ)
    return {
        "work_dir": str(Path(work_dir).expanduser().absolute()),
        "poll_seconds": 2.0 if poll is None else poll,
        "steps": steps,
    }


def world_size(environ: Mapping[str, str] | None = None) -> int:
    """Devices training together: ``WORLD_SIZE`` as torchrun/accelerate set it, else 1."""
    return get("WORLD_SIZE", environ) or 1


def rounds(environ: Mapping[str, str] | None = None) -> int:
    """Rounds of CroCo the asset graph holds: ``CROCO_ROUNDS``, else 1 (round 0, today's chain)."""
    value = get("CROCO_ROUNDS", environ)
    if value is None:
        return 1
    if value < 1:
        raise ValueError(f"CROCO_ROUNDS must be 1 or more (1 = round 0 only), got {value}")
    return value


def round_policies(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The chains of later rounds (``CROCO_ROUND_POLICY``): ``("language",)`` unless set."""
    from croco_pipeline.core.rounds import parse_round_policies

    try:
        return parse_round_policies(get("CROCO_ROUND_POLICY", environ))
    except ValueError as error:
        raise ValueError(f"CROCO_ROUND_POLICY: {error}") from None


def dagster_home(environ: Mapping[str, str] | None = None) -> str | None:
    return get("DAGSTER_HOME", environ)


def slurm_job_id(environ: Mapping[str, str] | None = None) -> str | None:
    return get("SLURM_JOB_ID", environ)


def current() -> dict[str, str]:
    """A copy of the whole environment, for a child process that must see what this one sees."""
    return dict(os.environ)


def variables_table() -> str:
    """The variables as a Markdown table (``croco env``; the README's table is checked against it)."""
    rows = ["| variable | what it sets |", "|---|---|"]
    rows += [f"| `{v.name}` | {v.help} |" for v in VARIABLES.values()]
    return "\n".join(rows)
