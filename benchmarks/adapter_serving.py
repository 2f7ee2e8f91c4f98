"""Tuned-model generation: vLLM serving the LoRA adapter per request against the adapter merged into
the weights (what ``PolicyResource.adapter_serving`` chooses between; ``auto`` takes ``merged`` on a
CPU and ``lora`` on a GPU).

Each side runs in a fresh process, so everything a pipeline step pays is timed: process start,
imports, (merging the adapter,) the engine start and the generation itself. The two sides alternate,
``--repeat`` times; the script prints per-side medians of the wall time and of the generation
tokens/s alone, and the ratio lora / merged of the wall time (above 1: merging is faster).

    python benchmarks/adapter_serving.py --adapter croco_data/checkpoints/dpo_checkpoint/language=da
    python benchmarks/adapter_serving.py --adapter DIR --prompts 16 --n 2 --max-new-tokens 64 --repeat 3

The adapter's own manifest names its base model (the adapter_config.json's base path). The prompts
are the shipped Danish held-out prompts (or the train ones when more are asked for).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from bench_common import interleaved, medians, print_load, run_child


def child(args: argparse.Namespace) -> None:
    """One side, in its own process: prints one JSON line with its timings."""
    started = time.perf_counter()
    import polars as pl

    from croco_pipeline.core.models.lifetime import open_adapter_generator
    from croco_pipeline.core.prompts.sets import load_shipped_prompts
    from croco_pipeline.core.sampling.config import SamplingConfig

    base = json.loads((__import__("pathlib").Path(args.adapter) / "adapter_config.json").read_text())[
        "base_model_name_or_path"
    ]
    prompts = load_shipped_prompts("da").sort("prompt_id")
    prompts = pl.concat([prompts.filter(pl.col("split") == "heldout"), prompts.filter(pl.col("split") == "train")])
    texts = prompts["prompt"].head(args.prompts).to_list()
    sampling = SamplingConfig(n=args.n, max_new_tokens=args.max_new_tokens, seed=0)
    with open_adapter_generator(base, args.adapter, serving=args.child, backend="vllm", max_model_len=1024) as gen:
        ready = time.perf_counter()
        completions = gen.generate(texts, sampling, adapter_path=args.adapter)
        generated = time.perf_counter()
    tokens = sum(c.num_tokens for answers in completions for c in answers)
    print(
        json.dumps(
            {
                "side": args.child,
                "setup_s": ready - started,
                "generate_s": generated - ready,
                "tokens": tokens,
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", required=True, help="a LoRA adapter folder (a dpo_checkpoint)")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=2, help="answers per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=["lora", "merged"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    def run(side: str, index: int) -> dict:
        child = run_child(
            [sys.executable, __file__, "--adapter", args.adapter, "--prompts", str(args.prompts), "--n", str(args.n)]
            + ["--max-new-tokens", str(args.max_new_tokens), "--child", side]
        )
        lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
        if not lines:
            sys.exit(f"{side} run printed no figures:\n{child.stderr[-3000:]}")
        return json.loads(lines[-1]) | {"wall_s": child.wall}

    def report(side: str, index: int, figures: dict) -> None:
        print(
            f"round {index + 1} {side:6s} wall {figures['wall_s']:6.1f} s  setup {figures['setup_s']:5.1f} s  "
            f"generate {figures['generate_s']:5.1f} s  {figures['tokens'] / figures['generate_s']:6.0f} tok/s",
            flush=True,
        )

    print_load("start")
    runs = interleaved(("lora", "merged"), run, rounds=args.repeat, report=report)
    wall = medians(runs, lambda figures: figures["wall_s"])
    print(f"\n{args.prompts} prompts x {args.n} answers x <= {args.max_new_tokens} tokens, medians of {args.repeat}:")
    for side in ("lora", "merged"):
        tok_s = statistics.median(run["tokens"] / run["generate_s"] for run in runs[side])
        print(f"  {side:6s}  wall {wall[side]:6.1f} s   generation {tok_s:6.0f} tok/s")
    print(f"  ratio lora / merged wall time: {wall['lora'] / wall['merged']:.2f}")
    print_load("end")


if __name__ == "__main__":
    main()
