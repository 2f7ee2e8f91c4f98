"""Model-loading work as SLURM jobs, driven from the Dagster step through Dagster Pipes.

:func:`run_in_slurm_job` pickles a call into a job folder on the shared file system, submits a batch
job that runs it (``core.execution.slurm_job``) and waits for it. Meanwhile the job's log lines, stdout
and stderr arrive in the Dagster run through a Pipes message file; its job id, node and run time become
output metadata. A job that fails raises in the step with the job id and the job's traceback. If the
Dagster run is cancelled (or the step interrupted) while the job is queued or running, the job is
cancelled with ``scancel``.

The step itself stays light: it reads its inputs, hands the heavy call to the job, and writes the
result through its IO manager as it always does. Chunked stages stage their chunks from inside the job,
so a job that was cancelled or died resumes from its last finished chunk when the step runs again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Optional

from dagster import Config, MetadataValue
from dagster._core.pipes.utils import PipesEnvContextInjector, PipesFileMessageReader, open_pipes_session

from croco_pipeline import envs
from croco_pipeline.core.execution import slurm
from croco_pipeline.core.execution.slurm_job import CALL_NAME, ERROR_NAME, RESULT_NAME


class SlurmJobConfig(Config):
    """What one kind of step asks SLURM for (None: the cluster's default)."""

    partition: Optional[str] = None
    gpus: int = 0
    cpus: int = 1
    mem: Optional[str] = None  # e.g. "32G"
    time: Optional[str] = None  # e.g. "04:00:00"
    extra_args: list[str] = []  # more sbatch options, e.g. ["--account=my-project", "--qos=short"]

    def spec(self) -> slurm.SlurmJobSpec:
        return slurm.SlurmJobSpec(
            partition=self.partition,
            gpus=self.gpus,
            cpus=self.cpus,
            mem=self.mem,
            time=self.time,
            extra_args=tuple(self.extra_args),
        )


def _tail(path: Path, lines: int = 40) -> str:
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_in_slurm_job(
    context,
    step: str,
    job: SlurmJobConfig,
    work_dir: str,
    function: Callable[..., Any],
    args: tuple = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    poll_seconds: float = 2.0,
    output_name: str | None = None,
) -> Any:
    """``function(*args, **kwargs)`` in a SLURM job; returns its result (see the module docstring).

    ``output_name`` names the output whose metadata gets the job's id, node and seconds (for steps with
    several outputs); ``None`` for a single-output asset.
    """
    import cloudpickle

    run_id = context.run.run_id
    folder = Path(work_dir).absolute() / run_id / f"{context.op_execution_context.op.name}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    (folder / CALL_NAME).write_bytes(cloudpickle.dumps((function, tuple(args), dict(kwargs or {}))))
    script = folder / "job.sh"
    script.write_text(slurm.batch_script(folder, job.spec(), f"croco-{step}", Path.cwd()))

    reader = PipesFileMessageReader(str(folder / "messages.jsonl"), include_stdio_in_messages=True, cleanup_file=False)
    with open_pipes_session(
        context=context.op_execution_context,
        context_injector=PipesEnvContextInjector(),
        message_reader=reader,
    ) as session:
        env = {**envs.current(), **session.get_bootstrap_env_vars()}
        job_id = slurm.submit(script, env)
        directives = " ".join(job.spec().directives())
        context.log.info(f"SLURM job {job_id} submitted for {step} ({directives}); files in {folder}")
        try:
            final = slurm.wait(
                job_id,
                poll_seconds,
                on_change=lambda s: context.log.info(
                    f"SLURM job {job_id}: {s.state}" + (f" on {s.node}" if s.node else "")
                ),
            )
        except BaseException:  # the run was cancelled or the step interrupted: take the job down with it
            try:
                slurm.cancel(job_id)
                context.log.warning(f"SLURM job {job_id} cancelled (scancel) because the step was interrupted")
            except Exception as error:
                context.log.error(f"SLURM job {job_id} could not be cancelled: {error}")
            raise
        reports = [message for message in session.get_custom_messages() if isinstance(message, dict)]

    if final.state != "COMPLETED" or not (folder / RESULT_NAME).is_file():
        error = _tail(folder / ERROR_NAME) or _tail(folder / f"slurm-{job_id}.out")
        raise slurm.SlurmError(
            f"SLURM job {job_id} for {step} ended {final.state} (exit code {final.exit_code or '?'}"
            + (f", node {final.node}" if final.node else "")
            + (f", reason {final.reason}" if final.reason not in ("", "None") else "")
            + f"); job files in {folder}"
            + (f"\n{error}" if error else "")
        )
    result = cloudpickle.loads((folder / RESULT_NAME).read_bytes())
    report = reports[-1] if reports else {}
    metadata = {
        "slurm_job_id": MetadataValue.text(job_id),
        "slurm_node": MetadataValue.text(str(report.get("node") or final.node)),
        "slurm_seconds": MetadataValue.float(float(report.get("seconds", 0.0))),
    }
    if output_name:
        context.add_output_metadata(metadata, output_name=output_name)
    else:
        context.add_output_metadata(metadata)
    (folder / RESULT_NAME).unlink()  # the result now lives in the step; the logs stay for reading
    return result
