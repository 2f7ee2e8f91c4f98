"""Where the heavy stages run: in the step's own process, on a Ray cluster, or in a GPU pod of their own.

With ``num_workers=0`` (the default) nothing changes: the step computes its chunks itself. With
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

import os
from collections.abc import Callable, Mapping
from typing import Optional

import polars as pl
from dagster import ConfigurableResource

from croco_pipeline.core.execution.ray_pool import DEFAULT_MAX_RETRIES, ChunkWorker, run_chunked_on_ray
from croco_pipeline.core.execution.staging import ChunkProgress, StagingArea
from croco_pipeline.resources.model_resources import PolicyResource, RewardResource


class RayClusterResource(ConfigurableResource):
    """How the heavy stages use Ray. ``num_workers`` 0: not at all (compute in the step's process)."""

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
        """``core.execution.staging.run_chunked`` on this resource's Ray workers (see ``run_chunked_on_ray``)."""
        return run_chunked_on_ray(
            frame, key, chunk_size, staging, make_worker,
            num_workers=self.num_workers, ray_address=self.address or None, max_retries=self.max_retries,
            num_gpus=self.gpus_per_worker, num_cpus=self.cpus_per_worker, on_chunk=on_chunk,
        )


def ray_cluster_from_env(environ: Mapping[str, str] | None = None) -> RayClusterResource:
    """The resource as ``CROCO_RAY_WORKERS`` (default 0) and ``CROCO_RAY_GPUS_PER_WORKER`` set it;
    the address comes from ``RAY_ADDRESS`` at run time."""
    environ = os.environ if environ is None else environ
    gpus = environ.get("CROCO_RAY_GPUS_PER_WORKER")
    return RayClusterResource(
        num_workers=int(environ.get("CROCO_RAY_WORKERS") or 0),
        gpus_per_worker=float(gpus) if gpus else None,
    )


def generator_options(policy: PolicyResource, *, seed: int, enable_lora: bool = False) -> dict:
    """``open_generator`` keyword arguments equal to what ``policy.open(seed=...)`` uses, as plain
    values a Ray worker can receive. The model spec stays unresolved: the worker resolves it."""
    return dict(
        model=policy.model, backend=policy.backend, max_model_len=policy.max_model_len, enable_lora=enable_lora,
        max_lora_rank=policy.max_lora_rank, seed=seed, dtype=policy.dtype,
        gpu_memory_utilization=policy.gpu_memory_utilization, tensor_parallel_size=policy.tensor_parallel_size,
    )


def scorer_options(reward: RewardResource) -> dict:
    """``open_reward_scorer`` keyword arguments equal to what ``reward.open()`` uses, as plain values."""
    return dict(
        backend=reward.backend, model=reward.model, max_length=reward.max_length, overflow=reward.overflow,
        batch_size=reward.batch_size,
    )


def k8s_gpu_step_tags(*, ray_capable: bool = False, environ: Mapping[str, str] | None = None) -> dict:
    """``op_tags`` for a model-loading asset: under dagster-k8s's ``k8s_job_executor`` each step runs in
    its own pod, and these tags give that pod ``CROCO_K8S_STEP_GPUS`` GPUs (and tolerate the usual
    GPU-node taint). No tags (other executors ignore them anyway) when ``CROCO_K8S_STEP_GPUS`` is unset
    or 0, or for a ``ray_capable`` asset (generation, reward scoring) while ``CROCO_RAY_WORKERS`` > 0:
    its models then run on the Ray workers and the step itself needs no GPU."""
    environ = os.environ if environ is None else environ
    gpus = int(environ.get("CROCO_K8S_STEP_GPUS") or 0)
    if gpus < 1 or (ray_capable and int(environ.get("CROCO_RAY_WORKERS") or 0) > 0):
        return {}
    return {
        "dagster-k8s/config": {
            "container_config": {"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}},
            "pod_spec_config": {
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
            },
        }
    }
