"""Scale the heavy stages out: compute staged chunks on a pool of Ray actors, one model per actor.

:func:`run_chunked_on_ray` keeps the contract of :func:`croco_pipeline.core.execution.staging.run_chunked`
(same chunks, same staging folder and file names, same return value) but hands the chunks to
``num_workers`` Ray actors instead of computing them one after another in this process:

* Each actor builds one *worker* with ``make_worker()`` when it starts - e.g. a
  :class:`GenerationWorker` that opens one vLLM engine (one per GPU) - and keeps it for every chunk
  it is given, then ``close()``s it. Chunks go to whichever actor is free (``ray.util.ActorPool``).
* Chunks already in staging are read back here and never sent to Ray; a stage whose chunks are all
  staged starts no actor and does not even connect to Ray.
* Each finished chunk is written atomically to staging (by this process, as soon as it arrives), so
  a crash loses only the chunks in flight. An actor that dies mid-chunk (a lost node, an OOM kill) is
  restarted by Ray and its chunk retried, up to ``max_retries`` times; a chunk file is keyed by its
  index, so a retry can never add rows twice.
* Results do not depend on how many workers there are: a chunk's rows depend only on the chunk
  (generation seeds each prompt from the run seed and the prompt text), and the result comes back in
  chunk order. With the transformers backend a sharded run writes exactly the
  rows a single-process run writes.

GPUs: each actor asks Ray for ``num_gpus`` GPUs (default: 1 when the cluster has GPUs, else 0), so a
node with 8 GPUs runs 8 workers, each with its own engine. For a model too large for one GPU, give the
generator ``tensor_parallel_size=k`` and the actors ``num_gpus=k``: vLLM then shards the model over
the k GPUs Ray gave that actor (its own worker processes, inside the actor's GPU set).

This module has no Dagster import; ``croco_pipeline.resources.ray_cluster`` wraps it for the assets.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import polars as pl

from croco_pipeline.core.execution.staging import ChunkProgress, StagingArea, chunks_of, read_staged_chunk
from croco_pipeline.core.io import atomic
from croco_pipeline.core.sampling.config import SamplingConfig

log = logging.getLogger(__name__)

DEFAULT_MAX_RETRIES = 3


class ChunkWorker(Protocol):
    """What ``make_worker()`` returns: something that holds a model and computes chunks with it."""

    def compute(self, chunk: pl.DataFrame, index: int) -> pl.DataFrame: ...

    def close(self) -> None: ...


class _ChunkActor:
    """The Ray actor around one worker. Ray calls ``__init__`` again when it restarts the actor, so
    a restarted actor reopens its model before it retries the chunk it lost."""

    def __init__(self, make_worker: Callable[[], ChunkWorker]):
        self._worker = make_worker()

    def compute(self, chunk: pl.DataFrame, index: int) -> tuple[int, pl.DataFrame]:
        return index, self._worker.compute(chunk, index)

    def close(self) -> None:
        self._worker.close()


def run_chunked_on_ray(
    frame: pl.DataFrame,
    key: str,
    chunk_size: int,
    staging: StagingArea,
    make_worker: Callable[[], ChunkWorker],
    *,
    num_workers: int,
    ray_address: str | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    num_gpus: float | None = None,
    num_cpus: float = 1,
    runtime_env: dict | None = None,
    on_chunk: Callable[[ChunkProgress], None] | None = None,
) -> tuple[pl.DataFrame, ChunkProgress]:
    """``run_chunked`` with the chunks computed by ``num_workers`` Ray actors (see the module docstring).

    ``make_worker`` is sent to the actors, so it must pickle (no Dagster resources inside; pass plain
    values, e.g. ``functools.partial(GenerationWorker, options, ...)``). ``ray_address``: the cluster
    to join when this process is not connected yet (None: ``RAY_ADDRESS``, else Ray starts a local
    one); a connection made here is closed at the end, one made by the caller is kept.
    ``max_retries``: how often an actor that died is restarted and its chunk retried (an exception
    raised by ``compute`` itself is not retried: it would fail again). ``num_gpus`` per actor: None
    means 1 when the cluster has GPUs, else 0. ``runtime_env`` is passed to the actors (e.g.
    ``{"env_vars": {"HF_HOME": ...}}``).
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    chunks = list(chunks_of(frame, key, chunk_size))
    progress = ChunkProgress(total=len(chunks))
    results: dict[int, pl.DataFrame] = {}
    pending: list[int] = []
    for index in range(len(chunks)):
        staged = read_staged_chunk(staging.chunk_path(index), staging.storage_options, progress)
        if staged is not None:
            results[index] = staged
            progress.reused += 1
            if on_chunk:
                on_chunk(progress)
        else:
            pending.append(index)

    if pending:
        finished = _compute_on_ray(
            [(chunks[i], i) for i in pending],
            make_worker,
            num_workers=min(num_workers, len(pending)),
            ray_address=ray_address,
            max_retries=max_retries,
            num_gpus=num_gpus,
            num_cpus=num_cpus,
            runtime_env=runtime_env,
        )
        with contextlib.closing(finished):  # stops the actors even if writing a chunk fails
            for index, result in finished:
                atomic.write_parquet(result, staging.chunk_path(index), staging.storage_options)
                results[index] = result
                progress.computed += 1
                if on_chunk:
                    on_chunk(progress)

    ordered = [results[index] for index in range(len(chunks))]
    combined = pl.concat(ordered, how="vertical") if ordered else frame.clear()
    return combined, progress


def _compute_on_ray(
    work: list[tuple[pl.DataFrame, int]],
    make_worker: Callable[[], ChunkWorker],
    *,
    num_workers: int,
    ray_address: str | None,
    max_retries: int,
    num_gpus: float | None,
    num_cpus: float,
    runtime_env: dict | None,
):
    """Yield ``(index, result)`` for each ``(chunk, index)`` as the actors finish them."""
    import ray
    from ray.util import ActorPool

    connected_here = not ray.is_initialized()
    if connected_here:
        ray.init(address=ray_address)
    actors: list[Any] = []
    try:
        if num_gpus is None:
            num_gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        _warn_if_cluster_too_small(ray.cluster_resources(), num_workers, num_cpus, num_gpus)
        options: dict[str, Any] = dict(
            num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=max_retries, max_task_retries=max_retries
        )
        if runtime_env:
            options["runtime_env"] = runtime_env
        actor_class = ray.remote(_ChunkActor).options(**options)
        actors = [actor_class.remote(make_worker) for _ in range(num_workers)]
        log.info("computing %d chunks on %d Ray workers (%s GPU each)", len(work), num_workers, num_gpus)
        pool = ActorPool(actors)
        yield from pool.map_unordered(lambda actor, item: actor.compute.remote(*item), work)
    finally:
        _close_actors(ray, actors)
        if connected_here:
            ray.shutdown()


def _warn_if_cluster_too_small(resources: dict, num_workers: int, num_cpus: float, num_gpus: float) -> None:
    """Actors that cannot be placed wait for resources (an autoscaler may add nodes); say so."""
    fits = min(
        math.floor(resources.get("CPU", 0) / num_cpus) if num_cpus else num_workers,
        math.floor(resources.get("GPU", 0) / num_gpus) if num_gpus else num_workers,
    )
    if fits < num_workers:
        log.warning(
            "The Ray cluster has room for %d of %d workers (%s CPU, %s GPU each; cluster: %s): the others "
            "wait until nodes join, and chunks given to them wait too.",
            fits,
            num_workers,
            num_cpus,
            num_gpus,
            resources,
        )


def _close_actors(ray: Any, actors: list[Any]) -> None:
    """Let each worker release its model (a vLLM engine must be shut down explicitly), then stop it."""
    if not actors:
        return
    try:
        ray.get([actor.close.remote() for actor in actors], timeout=120)
    except Exception as exc:  # a dead actor cannot close; it is killed below either way
        log.warning("closing a Ray worker failed: %s", exc)
    for actor in actors:
        ray.kill(actor)


# Workers for the two heavy stages. They take plain, picklable values (no Dagster resources) so that
# Ray can ship them to any node; the model is opened on the worker, where it runs.


class GenerationWorker:
    """Opens one generator (``open_policy_generator(**generator_options)``) and samples chunks with it.

    The other arguments are those of :func:`croco_pipeline.core.sampling.samples.sample_answers`. Generators
    seed each prompt from ``sampling.seed`` and the prompt text, so every chunk uses the same
    ``sampling`` and a chunk samples the same whichever worker computes it.
    """

    def __init__(
        self,
        generator_options: dict,
        language: str | None,
        sampling: SamplingConfig | Mapping[str, SamplingConfig],
        *,
        respond_in_language: bool,
        model_label: str,
        adapter_path: str | None = None,
        weights_path: str | None = None,
    ):
        self.language = language
        self.sampling = sampling
        self.respond_in_language = respond_in_language
        self.model_label = model_label
        self.adapter_path = adapter_path
        from croco_pipeline.core.models.lifetime import open_policy_generator, open_weights_generator

        # weights_path: a merged checkpoint of the policy's architecture (a later round's policy)
        if weights_path is None:
            self._generator = open_policy_generator(**generator_options)
        else:
            self._generator = open_weights_generator(weights_path=weights_path, **generator_options)

    def compute(self, chunk: pl.DataFrame, index: int) -> pl.DataFrame:
        from croco_pipeline.core.sampling.samples import sample_answers

        return sample_answers(
            self._generator,
            chunk,
            self.language,
            self.sampling,
            respond_in_language=self.respond_in_language,
            model_label=self.model_label,
            adapter_path=self.adapter_path,
        )

    def close(self) -> None:
        self._generator.close()


class RewardWorker:
    """Opens one reward scorer (``open_scorer(**scorer_options)``) and scores chunks with it;
    ``respond_in_language`` as in :func:`croco_pipeline.core.sampling.scoring.add_rewards`."""

    def __init__(self, scorer_options: dict, respond_in_language: bool = False):
        from croco_pipeline.core.models.reward_scorers import open_scorer

        # The model spec is resolved here, on the worker's node.
        self._scorer = open_scorer(**scorer_options)
        self.respond_in_language = respond_in_language

    def compute(self, chunk: pl.DataFrame, index: int) -> pl.DataFrame:
        from croco_pipeline.core.sampling.scoring import add_rewards

        return add_rewards(chunk, self._scorer, respond_in_language=self.respond_in_language)

    def close(self) -> None:
        self._scorer.close()
