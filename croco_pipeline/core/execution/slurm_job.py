"""The program a SLURM job runs: ``python -m croco_pipeline.core.execution.slurm_job <job folder>``.

The submitting Dagster step (``croco_pipeline.resources.slurm``) left ``call.pkl`` in the folder: a
function and its arguments, pickled with cloudpickle. The job opens Dagster Pipes (the bootstrap
variables came with the environment), runs the call, writes ``result.pkl`` (or ``error.txt`` with the
traceback) and reports where and how long it ran. Its log lines, stdout and stderr go back to the
Dagster run through the Pipes message file.

Imports ``dagster_pipes`` only, never Dagster itself.
"""

from __future__ import annotations

import socket
import sys
import time
import traceback
from pathlib import Path

CALL_NAME = "call.pkl"
RESULT_NAME = "result.pkl"
ERROR_NAME = "error.txt"


def log(message: str) -> None:
    """A log line for the Dagster run: through Pipes inside a job, to stderr anywhere else."""
    from dagster_pipes import PipesContext

    if PipesContext.is_initialized():
        PipesContext.get().log.info(message)
    else:
        print(message, file=sys.stderr)


def log_chunk_progress(progress) -> None:
    """``on_chunk`` of staged work running in a job (a picklable stand-in for the step's own logger)."""
    log(f"chunk {progress.reused + progress.computed}/{progress.total} done ({progress.reused} reused)")


def main(job_dir: str) -> int:
    import cloudpickle
    from dagster_pipes import open_dagster_pipes

    from croco_pipeline import envs
    from croco_pipeline.core.io.atomic import write_bytes

    folder = Path(job_dir)
    job_id = envs.slurm_job_id() or "?"
    with open_dagster_pipes() as pipes:
        node = socket.gethostname()
        started = time.perf_counter()
        try:
            function, args, kwargs = cloudpickle.loads((folder / CALL_NAME).read_bytes())
            name = getattr(function, "__qualname__", getattr(function, "__name__", repr(function)))
            pipes.log.info(f"SLURM job {job_id} on {node}: running {name}")
            result = function(*args, **kwargs)
            write_bytes(folder / RESULT_NAME, cloudpickle.dumps(result))
        except BaseException:
            text = traceback.format_exc()
            write_bytes(folder / ERROR_NAME, text.encode())
            pipes.log.error(f"SLURM job {job_id} on {node} failed:\n{text}")
            raise
        seconds = time.perf_counter() - started
        pipes.report_custom_message({"slurm_job_id": job_id, "node": node, "seconds": seconds})
        pipes.log.info(f"SLURM job {job_id} on {node}: done in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
