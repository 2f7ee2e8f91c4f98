"""What does sampling through `croco generate` cost, next to a bare vLLM script doing the same work?

The same work both ways, each in a fresh child process so that process start, imports and the engine's
start are counted on both sides:

  (a) croco: ``python -m croco_pipeline.cli generate`` (the ``croco generate`` command) on a prompt file,
      backend vLLM; it picks dtype and CPU threads itself (``core.models.hardware``) and writes Parquet.
  (b) bare: a plain script written here (it imports vLLM and transformers, not ``croco_pipeline``):
      ``LLM(...)``, the chat template applied with the tokenizer, ``llm.generate`` with one
      ``SamplingParams`` per prompt, the answers written as JSON.

Same model, same prompts (the shipped English set, cycled beyond its 64 prompts), same ``--n``,
``--max-new-tokens``, temperature 1.0 and top-p 1.0, the same seeds (the run seed for the engine, and
per prompt a hash of the run seed and the prompt, as croco seeds prompts), and the same engine: the
dtype and thread binding croco picks on this machine (``choose_cpu_engine(read_cpu_features())``, given
to the bare script explicitly, and checked against what croco reports), and on a CPU the settings croco
uses there (``enforce_eager=True``, ``enable_chunked_prefill=False``, the batch-token budget and the
KV-cache size). Both run with vLLM's logs at WARNING. The answers of the two are compared in every
round and the rounds where they agree token for token are counted: with all that equal they mostly do,
which shows it is the same work. (vLLM on a CPU is not bit-reproducible from run to run: which requests
share a batch step depends on timing, so now and then a few answers differ between any two runs, of
either side; the token totals are printed too.)

Runs are interleaved (croco bare, bare croco, ...) after ``--warmup`` untimed runs of each (cold page
cache, bytecode). Printed: every run's wall seconds and tokens, medians, tokens per second (end to end,
and of the generation alone as each side measures it), and the ratio ``median(bare) / median(croco)``
of wall seconds (1.0: no overhead; the target is at least 0.9), also as the median of the per-round
ratios, which cancels slow drifts of the machine's load, and of CPU seconds (of each child and its
engine processes, sampled while they run; less sensitive to other work on a shared machine).

    python benchmarks/generation_overhead.py                        # embedded SmolLM2-135M, 16 x 8 x 64
    python benchmarks/generation_overhead.py --model tiny --prompts 2 --n 2 --max-new-tokens 4 --repeat 1
    python benchmarks/generation_overhead.py --model PATH --prompts 64 --n 16 --max-new-tokens 256
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench_common import interleaved, medians, paired_median, print_load, resolve_model_arg, run_child

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 0.9

BARE_SCRIPT = r'''
"""Bare vLLM: sample n answers per prompt; the job (model, prompts, settings) comes as a JSON file."""
import hashlib
import json
import sys
import time


def prompt_seed(seed, prompt):
    digest = hashlib.blake2b(f"{seed}\x00{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31 - 2**20)


def main():
    with open(sys.argv[1]) as handle:
        job = json.load(handle)
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    started = time.perf_counter()
    llm = LLM(model=job["model"], seed=job["seed"], max_model_len=job["max_model_len"], dtype=job["dtype"],
              **job["engine"])
    engine_seconds = time.perf_counter() - started
    tokenizer = AutoTokenizer.from_pretrained(job["model"])
    prompts = [
        tokenizer(
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                          add_generation_prompt=True),
            add_special_tokens=False,
        )["input_ids"]
        for p in job["prompts"]
    ]
    params = [
        SamplingParams(n=job["n"], temperature=job["temperature"], top_p=job["top_p"], max_tokens=job["max_tokens"],
                       seed=prompt_seed(job["seed"], p))
        for p in job["prompts"]
    ]
    started = time.perf_counter()
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompts], params)
    generate_seconds = time.perf_counter() - started
    answers = [[{"text": o.text, "num_tokens": len(o.token_ids)} for o in request.outputs] for request in outputs]
    with open(job["out"], "w") as handle:
        json.dump({"answers": answers, "engine_seconds": engine_seconds, "generate_seconds": generate_seconds},
                  handle)
    llm.llm_engine.engine_core.shutdown()


if __name__ == "__main__":
    main()
'''


@dataclass
class Run:
    wall: float  # seconds from starting the child process to its exit
    cpu: float  # CPU seconds (user + system) of the child and the processes it starts, sampled
    tokens: int
    generate: float  # seconds inside generation, as the side itself measured them
    answers: dict[tuple[str, int], str]  # (prompt_id, sample_idx) -> answer


def benchmark_prompts(count: int) -> list[dict]:
    """``count`` English prompts: the shipped set in prompt_id order, cycled (marked as variants) past its end."""
    from croco_pipeline.core.prompts.sets import load_shipped_prompts

    shipped = load_shipped_prompts("en").sort("prompt_id")["prompt"].to_list()
    rows = []
    for i in range(count):
        text = shipped[i % len(shipped)]
        if i >= len(shipped):
            text += f" (variant {i // len(shipped)})"
        rows.append({"prompt_id": f"q{i:05d}", "language": "en", "prompt": text})
    return rows


def tokens_per_second(tokens: float, seconds: float) -> str:
    """A rate for the table; '-' where the time is too short to give one (tiny smoke runs)."""
    return f"{tokens / seconds:.1f}" if seconds > 0 else "-"


def engine_settings(max_model_len: int) -> tuple[dict, str, dict, str | None]:
    """(engine kwargs, dtype, environment, croco's log line) for the bare script, as croco sets them up."""
    import torch

    from croco_pipeline.core.models import generators
    from croco_pipeline.core.models.hardware import choose_cpu_engine, read_cpu_features

    engine: dict = {"gpu_memory_utilization": 0.85, "tensor_parallel_size": 1}
    if torch.cuda.is_available():
        return engine, "auto", {}, None
    choice = choose_cpu_engine(read_cpu_features())
    engine.update(generators.cpu_engine_options(max_model_len))
    if choice.in_process:  # the engine inside the script's own process, as croco starts it (both settings)
        engine["distributed_executor_backend"] = "uni"
    return engine, choice.dtype, choice.vllm_environment(), choice.reason


def child_environment() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    env["VLLM_LOGGING_LEVEL"] = "WARNING"
    # croco decides the binding itself; a binding in the caller's environment would override both sides' choice
    for name in ("VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU"):
        env.pop(name, None)
    return env


def croco_run(folder: Path, index: int, args: argparse.Namespace, model_path: str, cpu_reason: str | None) -> Run:
    import polars as pl

    out = folder / f"croco-{index}.parquet"
    command = [
        sys.executable,
        "-m",
        "croco_pipeline.cli",
        "generate",
        "--prompts",
        str(folder / "prompts.jsonl"),
        "--out",
        str(out),
        "--model",
        model_path,
        "--backend",
        "vllm",
        "--n",
        str(args.n),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--temperature",
        "1.0",
        "--top-p",
        "1.0",
        "--seed",
        str(args.seed),
        "--max-model-len",
        str(args.max_model_len),
        "--no-respond-in-language",
    ]
    child = run_child(command, env=child_environment(), cwd=folder, sample_tree=True)
    if cpu_reason is not None and cpu_reason not in child.stderr:
        raise SystemExit(
            f"croco chose other engine settings than the bare script got ({cpu_reason}):\n{child.stderr[-2000:]}"
        )
    seconds = re.search(r"([\d.]+) s generating", child.stdout)
    samples = pl.read_parquet(out)
    out.unlink()
    answers = {(r["prompt_id"], r["sample_idx"]): r["response"] for r in samples.iter_rows(named=True)}
    generate = float(seconds.group(1)) if seconds else float("nan")
    return Run(child.wall, child.cpu, int(samples["num_tokens"].sum()), generate, answers)


def bare_run(folder: Path, index: int, job: dict, vllm_env: dict[str, str], prompts: list[dict]) -> Run:
    out = folder / f"bare-{index}.json"
    job_file = folder / "bare-job.json"
    job_file.write_text(json.dumps({**job, "out": str(out)}))
    child = run_child(
        [sys.executable, str(folder / "bare_vllm.py"), str(job_file)],
        env={**child_environment(), **vllm_env},
        cwd=folder,
        sample_tree=True,
    )
    result = json.loads(out.read_text())
    out.unlink()
    answers = {
        (row["prompt_id"], i): sample["text"]
        for row, samples in zip(prompts, result["answers"], strict=True)
        for i, sample in enumerate(samples)
    }
    tokens = sum(sample["num_tokens"] for samples in result["answers"] for sample in samples)
    return Run(child.wall, child.cpu, tokens, result["generate_seconds"], answers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        default="embedded",
        help="'embedded' (SmolLM2-135M-Instruct, default), 'tiny' (a tiny random model) or a folder",
    )
    parser.add_argument("--prompts", type=int, default=16, help="prompts (default 16)")
    parser.add_argument("--n", type=int, default=8, help="answers per prompt (default 8)")
    parser.add_argument(
        "--max-new-tokens", type=int, default=64, help="at most this many tokens per answer (default 64)"
    )
    parser.add_argument("--max-model-len", type=int, default=1024, help="context length (default 1024, as embedded)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each side, interleaved (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of each side first (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    parser.add_argument("--workdir", type=Path, help="folder for the temporary files (default: system temp)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if min(args.repeat, args.prompts, args.n, args.max_new_tokens) < 1 or args.warmup < 0:
        parser.error("--repeat, --prompts, --n and --max-new-tokens must be >= 1, --warmup >= 0")

    with tempfile.TemporaryDirectory(prefix="croco-generation-overhead-", dir=args.workdir) as tmp:
        folder = Path(tmp)
        print_load("start")
        model_path = resolve_model_arg(args.model, folder)
        prompts = benchmark_prompts(args.prompts)
        (folder / "prompts.jsonl").write_text("".join(json.dumps(row) + "\n" for row in prompts))
        (folder / "bare_vllm.py").write_text(BARE_SCRIPT)
        engine, dtype, vllm_env, cpu_reason = engine_settings(args.max_model_len)
        job = dict(
            model=model_path,
            prompts=[row["prompt"] for row in prompts],
            n=args.n,
            temperature=1.0,
            top_p=1.0,
            max_tokens=args.max_new_tokens,
            seed=args.seed,
            max_model_len=args.max_model_len,
            dtype=dtype,
            engine=engine,
        )
        shown = Path(model_path).name if args.model in ("embedded", "tiny") else model_path
        print(
            f"model {args.model} ({shown}), {args.prompts} prompts x {args.n} answers x <= {args.max_new_tokens} "
            f"tokens, temperature 1.0, seed {args.seed}",
            flush=True,
        )
        print(f"engine (both sides): dtype {dtype}, {json.dumps(engine)}, {json.dumps(vllm_env)}", flush=True)
        if cpu_reason:
            print(f"  croco's choice: {cpu_reason}", flush=True)

        def run(side: str, index: int) -> Run:
            if side == "croco":
                return croco_run(folder, index, args, model_path, cpu_reason)
            return bare_run(folder, index, job, vllm_env, prompts)

        def report(side: str, index: int, r: Run) -> None:
            if index < 0:
                print(f"  warm-up {side:5s}: {r.wall:6.2f} s wall, {r.tokens} tokens", flush=True)
                return
            print(
                f"  run {index + 1} {side:5s}: {r.wall:6.2f} s wall, {r.cpu:6.2f} s CPU, {r.tokens} tokens, "
                f"{r.tokens / r.wall:7.1f} tok/s end to end, {r.generate:6.2f} s generating "
                f"({tokens_per_second(r.tokens, r.generate):>7} tok/s)",
                flush=True,
            )

        runs = interleaved(("croco", "bare"), run, rounds=args.repeat, warmup=args.warmup, report=report)
        wall = medians(runs, lambda r: r.wall)
        cpu = medians(runs, lambda r: r.cpu)
        generate = medians(runs, lambda r: r.generate)
        tokens = medians(runs, lambda r: r.tokens)
        ratio = wall["bare"] / wall["croco"]
        paired = paired_median(runs["croco"], runs["bare"], lambda c, b: b.wall / c.wall)
        same = sum(c.answers == b.answers for c, b in zip(runs["croco"], runs["bare"]))
        answers = len(runs["croco"][0].answers)
        print()
        for side in ("croco", "bare"):
            walls = ", ".join(f"{r.wall:.2f}" for r in runs[side])
            print(
                f"{side:5s}: median {wall[side]:.2f} s wall (runs: {walls}), {cpu[side]:.2f} s CPU, "
                f"{tokens[side]:.0f} tokens, "
                f"{tokens[side] / wall[side]:.1f} tok/s end to end; generation alone {generate[side]:.2f} s, "
                f"{tokens_per_second(tokens[side], generate[side])} tok/s"
            )
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        print(
            f"ratio bare / croco: {ratio:.3f} (median wall seconds; target >= {TARGET_RATIO}: {verdict}); "
            f"median of the per-round ratios {paired:.3f}; CPU seconds {cpu['bare'] / cpu['croco']:.3f}"
        )
        print(
            f"  outside generation: croco {wall['croco'] - generate['croco']:.2f} s, "
            f"bare {wall['bare'] - generate['bare']:.2f} s (process and engine start, prompts, output)"
        )
        print(f"  answers identical in {same} of {args.repeat} rounds ({answers} answers each)")
        print_load("end")
        if args.out:
            args.out.write_text(
                json.dumps(
                    {
                        "model": args.model,
                        "prompts": args.prompts,
                        "n": args.n,
                        "max_new_tokens": args.max_new_tokens,
                        "dtype": dtype,
                        "engine": engine,
                        "cpu_choice": cpu_reason,
                        "runs": {
                            side: [
                                {"wall": r.wall, "cpu": r.cpu, "tokens": r.tokens, "generate": r.generate} for r in rs
                            ]
                            for side, rs in runs.items()
                        },
                        "median_wall_seconds": wall,
                        "median_cpu_seconds": cpu,
                        "median_generate_seconds": generate,
                        "median_tokens": tokens,
                        "ratio": ratio,
                        "paired_ratio": paired,
                        "identical_rounds": same,
                        "load_average": os.getloadavg(),
                    },
                    indent=2,
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
