"""A thin SLURM client: write a batch script, ``sbatch`` it, follow its state, ``scancel`` it.

Only the SLURM command-line tools are used (``sbatch``, ``squeue``, ``scontrol``, ``scancel``), from the
machine Dagster runs on: a login node, or any host whose ``slurm.conf`` (``SLURM_CONF``) names the
cluster. No accounting database (``sacct``) is needed: a finished job's state comes from ``scontrol
show job``, which keeps it for ``MinJobAge`` seconds (300 by default).

The job runs ``python -m croco_pipeline.core.execution.slurm_job <job folder>`` with the same Python
and the same environment as the submitting step (``sbatch --export=ALL``), so the job folder, the
storage base and the model cache must be on a file system the compute nodes share.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# States after which a job never runs again (squeue/scontrol spelling).
FINISHED_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "REVOKED",
    "SPECIAL_EXIT",
}
JOB_MODULE = "croco_pipeline.core.execution.slurm_job"


class SlurmError(RuntimeError):
    """A SLURM command failed, or a job ended in another state than COMPLETED."""


@dataclass(frozen=True)
class SlurmJobSpec:
    """What one job asks the scheduler for. None leaves a value to the cluster's defaults."""

    partition: str | None = None
    gpus: int = 0
    cpus: int = 1
    mem: str | None = None  # e.g. "32G"
    time: str | None = None  # e.g. "04:00:00" or "1-00:00:00"
    extra_args: tuple[str, ...] = field(default_factory=tuple)  # more #SBATCH lines, e.g. ("--account=abc",)

    def directives(self) -> list[str]:
        lines = [f"--cpus-per-task={self.cpus}"]
        if self.partition:
            lines.append(f"--partition={self.partition}")
        if self.gpus:
            lines.append(f"--gpus={self.gpus}")
        if self.mem:
            lines.append(f"--mem={self.mem}")
        if self.time:
            lines.append(f"--time={self.time}")
        return lines + list(self.extra_args)


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: str
    exit_code: str = ""
    node: str = ""
    reason: str = ""

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES


def batch_script(job_dir: Path, spec: SlurmJobSpec, name: str, workdir: Path, python: str | None = None) -> str:
    """The batch script of a job that runs the pickled call in ``job_dir``."""
    directives = [f"--job-name={name}", f"--output={job_dir / 'slurm-%j.out'}", f"--chdir={workdir}", "--export=ALL"]
    directives += spec.directives()
    command = f"exec {shlex.quote(python or sys.executable)} -u -m {JOB_MODULE} {shlex.quote(str(job_dir))}"
    return "\n".join(["#!/bin/bash", *[f"#SBATCH {line}" for line in directives], "", command, ""])


def _run(command: list[str], env: dict | None = None) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    except FileNotFoundError as error:
        raise SlurmError(f"{command[0]} not found: is this a SLURM login node (PATH, SLURM_CONF)?") from error
    if completed.returncode != 0:
        raise SlurmError(f"{shlex.join(command)} failed ({completed.returncode}): {completed.stderr.strip()}")
    return completed.stdout


def submit(script: Path, env: dict | None = None) -> str:
    """``sbatch --parsable script``: the job id."""
    return _run(["sbatch", "--parsable", str(script)], env).strip().split(";")[0]


def status(job_id: str) -> JobStatus:
    """The job's state, from ``scontrol show job`` (pending, running, or finished within MinJobAge)."""
    try:
        text = _run(["scontrol", "show", "job", "--oneliner", job_id])
    except SlurmError as error:
        if "Invalid job id" in str(error):
            raise SlurmError(
                f"SLURM job {job_id} is unknown to the controller (finished longer than MinJobAge ago?)"
            ) from error
        raise
    fields = dict(item.split("=", 1) for item in text.split() if "=" in item)
    return JobStatus(
        job_id=job_id,
        state=fields.get("JobState", "UNKNOWN"),
        exit_code=fields.get("ExitCode", ""),
        node=fields.get("BatchHost") or fields.get("NodeList", ""),
        reason=fields.get("Reason", ""),
    )


def cancel(job_id: str) -> None:
    _run(["scancel", job_id])


def wait(job_id: str, poll_seconds: float = 2.0, on_change=None) -> JobStatus:
    """Poll until the job has finished; ``on_change(status)`` whenever its state changes."""
    last = None
    while True:
        current = status(job_id)
        if on_change is not None and current.state != last:
            on_change(current)
        last = current.state
        if current.finished:
            return current
        time.sleep(poll_seconds)
