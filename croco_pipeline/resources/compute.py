"""Where the heavy stages run: in the step's own process, on a Ray cluster, or in a GPU pod of their own.

Generation and reward scoring hand their chunked work to :class:`ComputeResource.run_chunked` and
never branch themselves. With ``num_workers=0`` (the default) the step computes its chunks itself,
one worker in its own process. With
``num_workers=N`` the step hands its chunks to N Ray actors, one model each (one per GPU on a GPU
cluster), via :func:`croco_pipeline.core.execution.ray_pool.run_chunked_on_ray`. The Ray settings do not
enter the staging fingerprint (they do not change the rows), so a stage started in-process can be
resumed on Ray and the other way round.

The cluster is found from ``address``, else the ``RAY_ADDRESS`` environment variable (e.g.
``ray://croco-head-svc:10001`` for the KubeRay cluster in deploy/ray/). If a Dagster resource of
``dagster-ray`` (``LocalRay``, ``KubeRayCluster``) already connected the step to a cluster, that
connection is used as it is.

On Kubernetes, :func:`k8s_gpu_step_tags` gives model-loading steps their own GPU pod instead (see
docs/gpu_cluster.md).

On a SLURM cluster (``slurm=True``, ``CROCO_EXECUTOR=slurm``) every model-loading step hands its heavy
call to a SLURM job through Dagster Pipes (:mod:`croco_pipeline.resources.slurm`): :meth:`ComputeResource.call`
for training and evaluation, :meth:`ComputeResource.run_chunked` for generation and scoring (the job
stages the chunks, so a cancelled job resumes where it stopped). What each kind of step asks for
(partition, GPUs, CPUs, memory, time) is in ``slurm_steps``, keyed by :data:`SLURM_STEP_KINDS`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Any, Optional

import polars as pl
from dagster import ConfigurableResource

from croco_pipeline import envs
from croco_pipeline.core.execution.ray_pool import DEFAULT_MAX_RETRIES, ChunkWorker, run_chunked_on_ray
from croco_pipeline.core.execution.slurm_job import log_chunk_progress
from croco_pipeline.core.execution.staging import ChunkProgress, StagingArea, run_chunked
from croco_pipeline.core.models.lifetime import OpenOnFirstUse
from croco_pipeline.resources.slurm import SlurmJobConfig, run_in_slurm_job


def _run_chunked_here(frame, key, chunk_size, staging, make_worker, ray: dict | None = None, on_chunk=None):
    """The chunked work of one step, in this process (one worker, opened only if a chunk is not staged
    yet) or on Ray actors (``ray``: ``run_chunked_on_ray`` options), here or inside a SLURM job."""
    if ray:
        return run_chunked_on_ray(frame, key, chunk_size, staging, make_worker, on_chunk=on_chunk, **ray)
    with OpenOnFirstUse(make_worker) as worker:
        return run_chunked(
            frame, key, chunk_size, staging, lambda chunk, index: worker.get().compute(chunk, index), on_chunk=on_chunk
        )


class ComputeResource(ConfigurableResource):
    """Where chunked work runs. ``num_workers`` 0: in the step's process; N: on N Ray actors."""

    num_workers: int = 0  # Ray actors, one model each; on GPUs usually the number of GPUs (/ tensor_parallel_size)
    address: Optional[str] = None  # None: RAY_ADDRESS; neither: Ray starts a local cluster for the step
    gpus_per_worker: Optional[float] = None  # None: 1 when the cluster has GPUs, else 0; = tensor_parallel_size for TP
    cpus_per_worker: float = 1.0
    max_retries: int = DEFAULT_MAX_RETRIES  # restarts of a worker that died (its chunk is retried)
    # SLURM: model-loading work runs as SLURM jobs (CROCO_EXECUTOR=slurm); see the module docstring.
    slurm: bool = False
    slurm_work_dir: str = ".croco_slurm"  # job folders (call, result, logs); on a file system the nodes share
    # per step kind (envs.SLURM_STEP_KINDS) or step name (an asset, e.g. multilingual_dpo_checkpoint,
    # which then wins over its kind); neither: 1 CPU and the cluster's defaults
    slurm_steps: dict[str, SlurmJobConfig] = {}
    slurm_poll_seconds: float = 2.0

    @property
    def enabled(self) -> bool:
        return self.num_workers > 0

    def _ray(self) -> dict | None:
        if not self.enabled:
            return None
        return dict(
            num_workers=self.num_workers,
            ray_address=self.address or None,
            max_retries=self.max_retries,
            num_gpus=self.gpus_per_worker,
            num_cpus=self.cpus_per_worker,
        )

    def scratch_root(self) -> str | None:
        """Where a step makes scratch folders its work writes to: the system's temporary folder in
        process, the SLURM job folder (shared with the nodes) under SLURM."""
        if not self.slurm:
            return None
        os.makedirs(self.slurm_work_dir, exist_ok=True)
        return self.slurm_work_dir

    def call(self, context, kind: str, function: Callable[..., Any], *args, output_name: str | None = None, **kwargs):
        """``function(*args, **kwargs)`` for a model-loading step of ``kind``: here, or in a SLURM job.

        Under SLURM the call and its arguments are pickled (cloudpickle) into the job and its result
        pickled back; the job's id, node and seconds become metadata of the step's output
        (``output_name`` for a step with several outputs)."""
        if not self.slurm:
            return function(*args, **kwargs)
        if kind not in envs.SLURM_STEP_KINDS:  # each kind of model-loading step has its own SLURM request
            raise ValueError(f"unknown step kind {kind!r}; one of {', '.join(envs.SLURM_STEP_KINDS)}")
        # An entry named after the step itself (e.g. "multilingual_dpo_checkpoint") wins over its kind's.
        step = context.op_execution_context.op.name
        request = self.slurm_steps.get(step) or self.slurm_steps.get(kind) or SlurmJobConfig()
        return run_in_slurm_job(
            context,
            kind,
            request,
            self.slurm_work_dir,
            function,
            args,
            kwargs,
            poll_seconds=self.slurm_poll_seconds,
            output_name=output_name,
        )

    def run_chunked(
        self,
        frame: pl.DataFrame,
        key: str,
        chunk_size: int,
        staging: StagingArea,
        make_worker: Callable[[], ChunkWorker],
        on_chunk: Callable[[ChunkProgress], None] | None = None,
        *,
        context=None,
        kind: str = "generation",
    ) -> tuple[pl.DataFrame, ChunkProgress]:
        """``core.execution.staging.run_chunked`` over ``make_worker()`` workers: one in this process
        (opened only if a chunk is not staged yet), or one per Ray actor (``run_chunked_on_ray``).
        Under SLURM the same happens inside a job of ``kind`` (``context`` is the step's)."""
        if self.slurm:
            if context is None:
                raise ValueError("run_chunked under SLURM needs the step's context")
            return self.call(
                context,
                kind,
                # inside the job, chunk progress goes to the Dagster run as log lines
                functools.partial(_run_chunked_here, ray=self._ray(), on_chunk=log_chunk_progress),
                frame,
                key,
                chunk_size,
                staging,
                make_worker,
            )
        return _run_chunked_here(frame, key, chunk_size, staging, make_worker, ray=self._ray(), on_chunk=on_chunk)


def compute_from_env(environ: Mapping[str, str] | None = None, slurm_steps: Mapping[str, dict] | None = None):
    """The resource as ``CROCO_RAY_WORKERS`` (default 0) and ``CROCO_RAY_GPUS_PER_WORKER`` set it (the
    address comes from ``RAY_ADDRESS`` at run time), and under ``CROCO_EXECUTOR=slurm`` with the
    profile's per-step SLURM requests ``slurm_steps`` (``envs.slurm_settings``)."""
    settings = dict(envs.ray_settings(environ))
    if envs.executor_name(environ) == "slurm":
        slurm = envs.slurm_settings(environ, slurm_steps)
        settings.update(
            slurm=True,
            slurm_work_dir=slurm["work_dir"],
            slurm_poll_seconds=slurm["poll_seconds"],
            slurm_steps={kind: SlurmJobConfig(**request) for kind, request in slurm["steps"].items()},
        )
    return ComputeResource(**settings)


def k8s_gpu_step_tags(*, ray_capable: bool = False, environ: Mapping[str, str] | None = None) -> dict:
    """``op_tags`` for a model-loading asset: under dagster-k8s's ``k8s_job_executor`` each step runs in
    its own pod, and these tags give that pod ``CROCO_K8S_STEP_GPUS`` GPUs (and tolerate the usual
    GPU-node taint). No tags (other executors ignore them anyway) when ``CROCO_K8S_STEP_GPUS`` is unset
    or 0, or for a ``ray_capable`` asset (generation, reward scoring) while ``CROCO_RAY_WORKERS`` > 0:
    its models then run on the Ray workers and the step itself needs no GPU."""
    gpus = envs.k8s_step_gpus(environ)
    if gpus < 1 or (ray_capable and envs.ray_settings(environ)["num_workers"] > 0):
        return {}
    return {
        "dagster-k8s/config": {
            "container_config": {"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}},
            "pod_spec_config": {
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
            },
        }
    }
