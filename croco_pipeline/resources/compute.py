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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Optional

import polars as pl
from dagster import ConfigurableResource

from croco_pipeline import profiles
from croco_pipeline.core.execution.ray_pool import DEFAULT_MAX_RETRIES, ChunkWorker, run_chunked_on_ray
from croco_pipeline.core.execution.staging import ChunkProgress, StagingArea, run_chunked
from croco_pipeline.core.models.lifetime import OpenOnFirstUse


class ComputeResource(ConfigurableResource):
    """Where chunked work runs. ``num_workers`` 0: in the step's process; N: on N Ray actors."""

    num_workers: int = 0  # Ray actors, one model each; on GPUs usually the number of GPUs (/ tensor_parallel_size)
    address: Optional[str] = None  # None: RAY_ADDRESS; neither: Ray starts a local cluster for the step
    gpus_per_worker: Optional[float] = None  # None: 1 when the cluster has GPUs, else 0; = tensor_parallel_size for TP
    cpus_per_worker: float = 1.0
    max_retries: int = DEFAULT_MAX_RETRIES  # restarts of a worker that died (its chunk is retried)

    @property
    def enabled(self) -> bool:
        return self.num_workers > 0

    def run_chunked(
        self,
        frame: pl.DataFrame,
        key: str,
        chunk_size: int,
        staging: StagingArea,
        make_worker: Callable[[], ChunkWorker],
        on_chunk: Callable[[ChunkProgress], None] | None = None,
    ) -> tuple[pl.DataFrame, ChunkProgress]:
        """``core.execution.staging.run_chunked`` over ``make_worker()`` workers: one in this process
        (opened only if a chunk is not staged yet), or one per Ray actor (``run_chunked_on_ray``)."""
        if not self.enabled:
            with OpenOnFirstUse(make_worker) as worker:
                return run_chunked(
                    frame, key, chunk_size, staging, lambda chunk, index: worker.get().compute(chunk, index),
                    on_chunk=on_chunk,
                )
        return run_chunked_on_ray(
            frame, key, chunk_size, staging, make_worker,
            num_workers=self.num_workers, ray_address=self.address or None, max_retries=self.max_retries,
            num_gpus=self.gpus_per_worker, num_cpus=self.cpus_per_worker, on_chunk=on_chunk,
        )


def compute_from_env(environ: Mapping[str, str] | None = None) -> ComputeResource:
    """The resource as ``CROCO_RAY_WORKERS`` (default 0) and ``CROCO_RAY_GPUS_PER_WORKER`` set it;
    the address comes from ``RAY_ADDRESS`` at run time."""
    return ComputeResource(**profiles.ray_settings(environ))


def k8s_gpu_step_tags(*, ray_capable: bool = False, environ: Mapping[str, str] | None = None) -> dict:
    """``op_tags`` for a model-loading asset: under dagster-k8s's ``k8s_job_executor`` each step runs in
    its own pod, and these tags give that pod ``CROCO_K8S_STEP_GPUS`` GPUs (and tolerate the usual
    GPU-node taint). No tags (other executors ignore them anyway) when ``CROCO_K8S_STEP_GPUS`` is unset
    or 0, or for a ``ray_capable`` asset (generation, reward scoring) while ``CROCO_RAY_WORKERS`` > 0:
    its models then run on the Ray workers and the step itself needs no GPU."""
    gpus = profiles.k8s_step_gpus(environ)
    if gpus < 1 or (ray_capable and profiles.ray_settings(environ)["num_workers"] > 0):
        return {}
    return {
        "dagster-k8s/config": {
            "container_config": {"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}},
            "pod_spec_config": {
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
            },
        }
    }
