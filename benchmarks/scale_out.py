"""Samples per second of generation in one process and on 1 and 2 Ray workers, and the Ray overhead.

The tiny configuration: the tiny random chat policy (``tests/tiny_models.py``, built here, nothing is
downloaded), transformers backend, ``--prompts`` prompts in chunks of ``--chunk``, ``--samples``
answers per prompt of at most ``--max-new-tokens`` tokens. Three ways, each from an empty staging
folder and each loading the model itself (the in-process stage opens it on first use; each Ray
actor opens its own):

  in-process   ``core.execution.staging.run_chunked`` - what the generations asset does without Ray. torch is
               held to ``--threads`` threads (default 1, as many as one Ray worker gets), so the
               difference to "Ray, 1 worker" is the cost of the Ray path itself;
  Ray, 1       ``core.execution.ray_pool.run_chunked_on_ray`` with one worker actor;
  Ray, 2       the same with two worker actors (one per Ray node).

The Ray cluster is a head and one worker node on 127.0.0.1 with one CPU each, started once (its start
time is printed, not counted). Runs are interleaved in rounds (in-process, Ray 1, Ray 2, then Ray 2, Ray 1,
in-process, ...: ``bench_common.interleaved``) so a change in the machine's load hits all three alike; the
table shows medians of ``--repeat`` runs and the load average. On a machine with 2 cores shared with other
work, 2 workers cannot be twice as fast.

    python benchmarks/scale_out.py [--repeat 3] [--prompts 24] [--chunk 2] [--samples 4]
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_common import interleaved, medians


@dataclass
class Timing:
    seconds: float  # the whole stage, model loading included
    first: float  # seconds to the first finished chunk
    steady: float  # samples per second over the chunks after the first
    rows: object  # the stage's rows (a polars DataFrame), to compare the three ways


def _start_loopback_cluster(tmp: str):
    """Head + one worker node, one CPU each, every process on 127.0.0.1 (docs/design.md §3)."""
    os.makedirs(os.path.join(tmp, "ray"), exist_ok=True)
    # Read by Ray when it is first imported: set before the import below.
    os.environ.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_TMPDIR=tmp, RAY_USAGE_STATS_ENABLED="0")
    os.environ.pop("RAY_ADDRESS", None)
    from ray.cluster_utils import Cluster

    node = dict(node_ip_address="127.0.0.1", num_cpus=1, object_store_memory=150 * 1024**2, include_dashboard=False)
    cluster = Cluster(initialize_head=True, connect=True, head_node_args=node)
    cluster.add_node(**node)
    cluster.wait_for_nodes()
    return cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--chunk", type=int, default=2, help="prompts per chunk")
    parser.add_argument("--samples", type=int, default=4, help="answers per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the in-process run")
    args = parser.parse_args()
    if args.prompts % args.chunk or args.prompts // args.chunk < 2:
        parser.error("--prompts must be a multiple of --chunk, with at least 2 chunks")

    import polars as pl
    import torch

    from croco_pipeline.core.execution.ray_pool import GenerationWorker, run_chunked_on_ray
    from croco_pipeline.core.execution.staging import StagingArea, run_chunked
    from croco_pipeline.core.models.generators import open_generator
    from croco_pipeline.core.models.lifetime import OpenOnFirstUse
    from croco_pipeline.core.sampling.config import SamplingConfig
    from croco_pipeline.core.sampling.samples import sample_answers

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' tiny-model builders
    from tiny_models import build_tiny_policy

    tmp = tempfile.mkdtemp(prefix="croco-scale-")
    try:
        model = str(build_tiny_policy(Path(tmp) / "tiny-policy"))
        prompts = pl.DataFrame(
            {
                "prompt_id": [f"p{i:03d}" for i in range(args.prompts)],
                "prompt": [f"Fortæl mig noget om emne nummer {i}." for i in range(args.prompts)],
            }
        )
        sampling = SamplingConfig(n=args.samples, max_new_tokens=args.max_new_tokens, seed=0)
        options = dict(model=model, backend="transformers", max_model_len=512)
        make_worker = functools.partial(
            GenerationWorker, options, "da", sampling, respond_in_language=True, model_label="tiny"
        )
        total_samples = args.prompts * args.samples

        started = time.perf_counter()
        cluster = _start_loopback_cluster(os.path.join(tmp, "r"))
        cluster_seconds = time.perf_counter() - started
        import ray

        def staging(name: str, run: int) -> StagingArea:
            return StagingArea(os.path.join(tmp, "staging", f"{name}-{run}"), "generations", "da", "bench")

        def in_process(run: int, on_chunk) -> pl.DataFrame:
            torch.set_num_threads(args.threads)
            with OpenOnFirstUse(lambda: open_generator(**options)) as generator:
                rows, _ = run_chunked(
                    prompts,
                    "prompt_id",
                    args.chunk,
                    staging("single", run),
                    lambda chunk, index: sample_answers(
                        generator.get(), chunk, "da", sampling, respond_in_language=True, model_label="tiny"
                    ),
                    on_chunk=on_chunk,
                )
            return rows

        def on_ray(workers: int, run: int, on_chunk) -> pl.DataFrame:
            rows, _ = run_chunked_on_ray(
                prompts,
                "prompt_id",
                args.chunk,
                staging(f"ray{workers}", run),
                make_worker,
                num_workers=workers,
                on_chunk=on_chunk,
            )
            return rows

        cases = {
            "in-process": in_process,
            "Ray, 1 worker": functools.partial(on_ray, 1),
            "Ray, 2 workers": functools.partial(on_ray, 2),
        }

        def timed(name: str, run: int) -> Timing:
            done: list[float] = []  # when each chunk was finished
            started = time.perf_counter()
            rows = cases[name](run, lambda progress: done.append(time.perf_counter()))
            return Timing(
                seconds=time.perf_counter() - started,
                first=done[0] - started,
                # Chunks after the first, over the time after the first: the rate once the models are up.
                steady=(len(done) - 1) * args.chunk * args.samples / (done[-1] - done[0]),
                rows=rows,
            )

        def report(name: str, run: int, timing: Timing) -> None:
            print(f"run {run + 1}/{args.repeat} {name}: {timing.seconds:.1f} s", flush=True)

        timings = interleaved(list(cases), timed, rounds=args.repeat, report=report)
        same = all(runs[-1].rows.equals(timings["in-process"][-1].rows) for runs in timings.values())
        ray.shutdown()
        cluster.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    seconds = medians(timings, lambda timing: timing.seconds)
    first = medians(timings, lambda timing: timing.first)
    steady = medians(timings, lambda timing: timing.steady)
    base, one = seconds["in-process"], seconds["Ray, 1 worker"]
    print()
    print(
        f"{args.prompts} prompts x {args.samples} samples x <= {args.max_new_tokens} new tokens, chunks of "
        f"{args.chunk} prompts, tiny policy, transformers backend; median of {args.repeat} runs"
    )
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; loopback Ray cluster started in "
        f"{cluster_seconds:.1f} s (not counted); in-process torch threads: {args.threads}"
    )
    print()
    print("wall: the whole stage, model loading included; first chunk: time to the first finished chunk (start-up")
    print("+ one chunk); steady: samples/s over the chunks after the first")
    print()
    print(
        f"| {'way':<15} | {'wall s':>6} | {'samples/s':>9} | {'vs in-process':>13} | {'first chunk s':>13} "
        f"| {'steady samples/s':>16} |"
    )
    print(f"|{'-' * 17}|{'-' * 8}|{'-' * 11}|{'-' * 15}|{'-' * 15}|{'-' * 18}|")
    for name, wall in seconds.items():
        print(
            f"| {name:<15} | {wall:>6.1f} | {total_samples / wall:>9.2f} | {base / wall:>12.2f}x "
            f"| {first[name]:>13.1f} | {steady[name]:>16.2f} |"
        )
    print()
    print(f"Ray path overhead at one worker: {one - base:+.1f} s per stage ({(one / base - 1) * 100:+.0f} %)")
    print(f"rows identical in all three ways: {same}")


if __name__ == "__main__":
    main()
