"""One model load per stage: generations and reward scores for several languages, one Dagster run per
language against one run over the range of languages (both assets take a single-run backfill policy).

Each side runs in a child process of its own (a fresh storage and Dagster instance; the prompts are
materialised first and not timed), then times the two model stages and counts the vLLM engine starts and
the model-loading steps. Sides alternate (a b, b a, …) so a drift in the machine's load hits both alike.

    python benchmarks/one_run_per_stage.py --languages da,nl,cy,ga --rounds 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import interleaved, medians, print_load, resolve_model_arg, run_child  # noqa: E402

SIDES = ("per_language", "one_run")


class _EngineStarts(logging.Handler):
    def __init__(self):
        super().__init__()
        self.count = 0

    def emit(self, record):
        message = record.getMessage()
        if "engine for" in message and "started" in message:
            self.count += 1


def child(args: argparse.Namespace) -> None:
    """One side, in this process: materialise the prompts, then time the model stages."""
    from dagster import DagsterInstance, materialize

    from croco_pipeline.definitions import ALL_ASSETS, build_resources
    from croco_pipeline.partitions import language_partitions

    languages = args.languages.split(",")
    environ = {
        **os.environ,
        "CROCO_PROFILE": args.profile,
        "CROCO_STORAGE": str(Path(args.workdir) / "data"),
        "CROCO_POLICY_MODEL": args.model,
    }
    resources = build_resources(environ=environ)
    home = Path(args.workdir) / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    instance = DagsterInstance.local_temp(str(home))
    instance.add_dynamic_partitions(language_partitions.name, languages)

    settings = {"max_train_prompts": args.prompts, "samples_per_prompt": args.samples}
    settings["max_new_tokens"] = args.max_new_tokens
    run_config = {"resources": {"settings": {"config": {k: v for k, v in settings.items() if v is not None}}}}

    def run(selection, **kwargs):
        result = materialize(
            ALL_ASSETS, selection=selection, instance=instance, resources=resources, run_config=run_config, **kwargs
        )
        if not result.success:
            raise SystemExit(f"{selection} failed")
        return sum(1 for event in result.all_events if event.is_step_success)

    for language in languages:
        run(["prompts"], partition_key=language)
    starts = _EngineStarts()
    logger = logging.getLogger("croco_pipeline.core.models.generators")
    logger.addHandler(starts)
    logger.setLevel(logging.INFO)
    stages = ["generations", "reward_scores"]
    began = time.perf_counter()
    if args.side == "per_language":
        steps = sum(run(stages, partition_key=language) for language in languages)
    else:
        tags = {
            "dagster/asset_partition_range_start": languages[0],
            "dagster/asset_partition_range_end": languages[-1],
        }
        steps = run(stages, tags=tags)
    seconds = time.perf_counter() - began
    print("RESULT " + json.dumps({"seconds": seconds, "engine_starts": starts.count, "model_steps": steps}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--languages", default="da,nl,cy,ga", help="comma-separated, in the order they are added")
    parser.add_argument("--model", default="embedded", help="embedded (SmolLM2-135M-Instruct) | tiny | a folder")
    parser.add_argument("--profile", default="embedded", help="the settings profile (embedded: the demo's sizes)")
    parser.add_argument("--prompts", type=int, default=None, help="training prompts per language (the profile's)")
    parser.add_argument("--samples", type=int, default=None, help="samples per prompt (the profile's)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="longest answer (the profile's)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each side")
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return child(args)

    print_load("start")
    scratch = Path(tempfile.mkdtemp(prefix="croco-one-run-"))
    model = resolve_model_arg(args.model, scratch)

    def run(side: str, index: int) -> dict:
        workdir = scratch / f"{side}-{index}"
        command = [sys.executable, __file__, "--side", side, "--workdir", str(workdir), "--model", model]
        command += ["--languages", args.languages, "--profile", args.profile]
        for flag, value in (("--prompts", args.prompts), ("--samples", args.samples)):
            command += [flag, str(value)] if value is not None else []
        command += ["--max-new-tokens", str(args.max_new_tokens)] if args.max_new_tokens is not None else []
        timing = run_child(command)
        line = next(line for line in timing.stdout.splitlines() if line.startswith("RESULT "))
        return json.loads(line.removeprefix("RESULT "))

    def report(side: str, index: int, result: dict) -> None:
        print(
            f"run {index:>2} {side:<12}: {result['seconds']:7.1f} s, {result['engine_starts']} engine starts, "
            f"{result['model_steps']} model-loading steps",
            flush=True,
        )

    results = interleaved(SIDES, run, rounds=args.rounds, warmup=args.warmup, report=report)
    seconds = medians(results, lambda r: r["seconds"])
    starts = medians(results, lambda r: r["engine_starts"])
    steps = medians(results, lambda r: r["model_steps"])
    print_load("end")
    languages = len(args.languages.split(","))
    print(f"\n{languages} languages, generations + reward_scores, medians of {args.rounds} runs each")
    print(f"{'':<14}{'seconds':>9}{'engine starts':>15}{'model steps':>13}")
    for side in SIDES:
        print(f"{side:<14}{seconds[side]:>9.1f}{starts[side]:>15.0f}{steps[side]:>13.0f}")
    print(
        f"one run saves {seconds['per_language'] - seconds['one_run']:.1f} s "
        f"({100 * (1 - seconds['one_run'] / seconds['per_language']):.0f} %)"
    )


if __name__ == "__main__":
    main()
