"""Chunks computed by Ray actors give exactly the rows of a single-process run, survive a worker
that dies mid-chunk, and reuse staged chunks.

A real Ray cluster (head + one worker node, one CPU each) runs on 127.0.0.1 for this module only:
Ray would otherwise advertise the machine's routable address (docs/design.md §3). It is shut down at the end.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from croco_pipeline.core.execution.ray_pool import GenerationWorker, RewardWorker, run_chunked_on_ray
from croco_pipeline.core.execution.staging import StagingArea, run_chunked
from croco_pipeline.core.models.lifetime import OpenOnFirstUse
from croco_pipeline.core.sampling.samples import sample_answers
from croco_pipeline.core.sampling.scoring import add_rewards
from croco_pipeline.resources.compute import ComputeResource
from croco_pipeline.resources.model_resources import PolicyResource, RewardResource
from croco_pipeline.resources.settings import PipelineSettings

if importlib.util.find_spec("ray") is None:
    pytest.skip("ray is not installed", allow_module_level=True)

LANGUAGE = "da"
CHUNK = 1  # prompts per chunk: 4 chunks for 2 workers
SETTINGS = PipelineSettings(samples_per_prompt=2, max_new_tokens=6, seed=7, respond_in_language=True)
PROMPTS = pl.DataFrame(
    {
        "prompt_id": ["p0", "p1", "p2", "p3"],
        "prompt": ["Hvad er en kat?", "Skriv om solen.", "Hvorfor er vand vådt?", "Nævn en god dag."],
    }
)


@pytest.fixture(scope="module")
def ray_cluster():
    """Head + one worker node on loopback; the test process is connected to it."""
    tmp = tempfile.mkdtemp(prefix="croco-ray-")  # short: Ray's socket paths live under it
    os.makedirs(os.path.join(tmp, "ray"))
    node = dict(node_ip_address="127.0.0.1", num_cpus=1, object_store_memory=150 * 1024**2, include_dashboard=False)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        env.setenv("RAY_TMPDIR", tmp)
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        env.delenv("RAY_ADDRESS", raising=False)
        # Ray reads the variable above when it is first imported: import it only now, and correct the
        # constant in case another test module imported Ray earlier.
        import ray
        import ray._private.ray_constants as ray_constants
        from ray.cluster_utils import Cluster

        env.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        # The workers below are defined in this test module, which Ray's workers cannot import: send
        # them by value.
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        cluster = Cluster(initialize_head=True, connect=True, head_node_args=node)
        try:
            cluster.add_node(**node)
            cluster.wait_for_nodes()
            assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
            yield cluster
        finally:
            ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
            ray.shutdown()
            cluster.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def policy(tiny_policy_path: Path) -> PolicyResource:
    return PolicyResource(model=str(tiny_policy_path), backend="transformers", max_model_len=512)


@pytest.fixture(scope="module")
def reward(tiny_reward_model_path: Path) -> RewardResource:
    return RewardResource(backend="sequence_classifier", model=str(tiny_reward_model_path), max_length=256)


def _make_generation_worker(policy: PolicyResource):
    """What the generations asset sends to Ray: plain values, no Dagster resource."""
    return functools.partial(
        GenerationWorker,
        policy.generator_options(seed=SETTINGS.seed),
        LANGUAGE,
        SETTINGS.sampling(),
        respond_in_language=SETTINGS.respond_in_language,
        model_label=policy.model,
    )


@pytest.fixture(scope="module")
def single_process_generations(policy: PolicyResource, tmp_path_factory) -> pl.DataFrame:
    """The reference: the generations asset's in-process path, one chunk after another."""
    staging = StagingArea(str(tmp_path_factory.mktemp("single")), "generations", LANGUAGE, "f")
    with OpenOnFirstUse(lambda: policy.open(seed=SETTINGS.seed)) as generator:
        samples, _ = run_chunked(
            PROMPTS,
            "prompt_id",
            CHUNK,
            staging,
            lambda chunk, index: sample_answers(
                generator.get(),
                chunk,
                LANGUAGE,
                SETTINGS.sampling(),
                respond_in_language=SETTINGS.respond_in_language,
                model_label=policy.model,
            ),
        )
    return samples


def _chunk_files(staging: StagingArea) -> list[str]:
    return sorted(p.name for p in Path(staging.folder).glob("*.parquet"))


@pytest.mark.system  # a Ray cluster
def test_generation_on_two_workers_equals_single_process(ray_cluster, policy, single_process_generations, tmp_path):
    staging = StagingArea(str(tmp_path), "generations", LANGUAGE, "f")
    seen = []
    samples, progress = run_chunked_on_ray(
        PROMPTS,
        "prompt_id",
        CHUNK,
        staging,
        _make_generation_worker(policy),
        num_workers=2,
        on_chunk=lambda p: seen.append(p.computed),
    )
    assert_frame_equal(samples, single_process_generations)
    assert (progress.total, progress.reused, progress.computed) == (4, 0, 4)
    assert seen == [1, 2, 3, 4]
    assert _chunk_files(staging) == [f"chunk-{i:05d}.parquet" for i in range(4)]
    assert samples.height == PROMPTS.height * SETTINGS.samples_per_prompt


@pytest.mark.system  # a Ray cluster
def test_reward_scoring_on_two_workers_equals_single_process(
    ray_cluster, reward, single_process_generations, tmp_path
):
    samples = single_process_generations
    with OpenOnFirstUse(reward.open) as scorer:
        expected, _ = run_chunked(
            samples,
            "prompt_id",
            CHUNK,
            StagingArea(str(tmp_path / "single"), "rewards", LANGUAGE, "f"),
            lambda chunk, index: add_rewards(chunk, scorer.get()),
        )
    resource = ComputeResource(num_workers=2)  # what the reward_scores asset calls
    scored, progress = resource.run_chunked(
        samples,
        "prompt_id",
        CHUNK,
        StagingArea(str(tmp_path / "ray"), "rewards", LANGUAGE, "f"),
        functools.partial(RewardWorker, reward.scorer_options()),
    )
    assert_frame_equal(scored, expected)
    assert progress.computed == 4
    assert scored["reward"].is_finite().all()


class DiesOnce:
    """Wraps a worker: its first attempt at chunk ``die_at`` kills the actor's process (as a lost node
    or an out-of-memory kill would); the marker file tells the restarted actor it already happened."""

    def __init__(self, make_worker, marker: str, die_at: int):
        self._worker = make_worker()
        self._marker = Path(marker)
        self._die_at = die_at

    def compute(self, chunk: pl.DataFrame, index: int) -> pl.DataFrame:
        if index == self._die_at and not self._marker.exists():
            self._marker.write_text(str(os.getpid()))
            os._exit(1)
        return self._worker.compute(chunk, index)

    def close(self) -> None:
        self._worker.close()


@pytest.mark.system  # a Ray cluster
def test_a_worker_killed_mid_chunk_is_retried_without_duplicates(
    ray_cluster, policy, single_process_generations, tmp_path
):
    marker = tmp_path / "died"
    staging = StagingArea(str(tmp_path / "base"), "generations", LANGUAGE, "f")
    make_worker = functools.partial(DiesOnce, _make_generation_worker(policy), str(marker), 2)
    samples, progress = run_chunked_on_ray(
        PROMPTS, "prompt_id", CHUNK, staging, make_worker, num_workers=2, max_retries=2
    )
    assert marker.exists(), "the worker never died: the test did not test a crash"
    assert progress.computed == 4
    assert samples.select("prompt_id", "sample_idx").is_duplicated().sum() == 0
    assert_frame_equal(samples, single_process_generations)
    assert _chunk_files(staging) == [f"chunk-{i:05d}.parquet" for i in range(4)]


class RecordsChunks:
    """A model-free worker that leaves one file per chunk it computes (in any actor's process)."""

    def __init__(self, folder: str):
        self._folder = Path(folder)

    def compute(self, chunk: pl.DataFrame, index: int) -> pl.DataFrame:
        (self._folder / f"computed-{index}").touch()
        return chunk.with_columns(pl.col("prompt").str.to_uppercase())

    def close(self) -> None:
        pass


def _never_opened():
    raise AssertionError("a worker was started although every chunk was staged")


@pytest.mark.system  # a Ray cluster
def test_staged_chunks_are_reused_and_never_sent_to_ray(ray_cluster, tmp_path):
    staging = StagingArea(str(tmp_path / "base"), "generations", LANGUAGE, "f")
    single_dir = tmp_path / "single"
    single_dir.mkdir()
    expected, _ = run_chunked(PROMPTS, "prompt_id", CHUNK, staging, RecordsChunks(str(single_dir)).compute)
    for index in (1, 3):  # as if a run had died after chunks 0 and 2
        Path(staging.chunk_path(index)).unlink()
    computed = tmp_path / "ray"
    computed.mkdir()
    resumed, progress = run_chunked_on_ray(
        PROMPTS, "prompt_id", CHUNK, staging, functools.partial(RecordsChunks, str(computed)), num_workers=2
    )
    assert sorted(p.name for p in computed.iterdir()) == ["computed-1", "computed-3"]
    assert (progress.reused, progress.computed) == (2, 2)
    assert_frame_equal(resumed, expected)

    again, progress = run_chunked_on_ray(PROMPTS, "prompt_id", CHUNK, staging, _never_opened, num_workers=2)
    assert (progress.reused, progress.computed) == (4, 0)
    assert_frame_equal(again, expected)


def test_num_workers_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="num_workers"):
        staging = StagingArea(str(tmp_path), "g", LANGUAGE, "f")
        run_chunked_on_ray(PROMPTS, "prompt_id", CHUNK, staging, _never_opened, num_workers=0)


def test_settings_from_the_environment():
    from croco_pipeline.resources.compute import compute_from_env, k8s_gpu_step_tags

    assert not compute_from_env({}).enabled
    resource = compute_from_env({"CROCO_RAY_WORKERS": "8", "CROCO_RAY_GPUS_PER_WORKER": "2"})
    assert (resource.num_workers, resource.gpus_per_worker, resource.address) == (8, 2.0, None)

    assert k8s_gpu_step_tags(environ={}) == {}
    tags = k8s_gpu_step_tags(environ={"CROCO_K8S_STEP_GPUS": "1"})
    assert tags["dagster-k8s/config"]["container_config"]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    # With Ray workers, generation and scoring need no GPU in their own pod; training still does.
    on_ray = {"CROCO_K8S_STEP_GPUS": "1", "CROCO_RAY_WORKERS": "4"}
    assert k8s_gpu_step_tags(ray_capable=True, environ=on_ray) == {}
    assert k8s_gpu_step_tags(environ=on_ray) == tags


def test_generator_and_scorer_options_match_the_resources(policy, reward):
    """The Ray workers open their models with what the resources' own ``open()`` would use."""
    import inspect

    from croco_pipeline.core.models.generators import open_generator
    from croco_pipeline.core.models.lifetime import open_policy_generator
    from croco_pipeline.core.models.reward_scorers import open_reward_scorer

    options = policy.generator_options(seed=3)
    assert options["model"] == policy.model and options["seed"] == 3
    # open_policy_generator adds engine sharing (keep_loaded) and passes the rest to open_generator
    assert set(options) - {"keep_loaded"} <= set(inspect.signature(open_generator).parameters)
    assert "keep_loaded" in inspect.signature(open_policy_generator).parameters
    assert set(reward.scorer_options()) <= set(inspect.signature(open_reward_scorer).parameters)
