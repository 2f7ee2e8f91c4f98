"""How fast, and in how much memory, preference pairs are built from large scored files.

Generates seeded synthetic scored data (64 samples per prompt, responses of 20–200 characters of
word-like text, a few missing rewards), writes it as Parquet and JSONL in a temporary folder, and runs
each case as a child process so its wall time includes process start and its peak memory is the
child's own peak RSS (from ``os.wait4``):

  (a) 1,000,000 samples (15,625 prompts × 64, one language), in-language, ``croco pairs`` from Parquet
      to Parquet;
  (b) the same samples from JSONL through ``croco pairs``, against a plain-Python implementation of
      the rule (json per line, dicts, per-pool sorting) on the same file, both writing JSONL;
      prints the speed-up. The plain version runs twice: with statistics.fmean/pstdev (the obvious
      code; pstdev is exact, hence slow) and with math.fsum (hand-tuned). A third child only starts
      Python, imports polars and reads the file's scored columns the way ``croco pairs`` does: the
      floor under any JSONL pairing command built on it, and so the largest speed-up there is to have;
  (c) 7 languages × 2,232 prompts × 64 samples, cross-language, from Parquet;
  (d) ``--size 10m``: 10,000,000 samples (156,250 prompts × 64), in-language, from Parquet.

    python benchmarks/pairs_at_scale.py              # (a)-(c)
    python benchmarks/pairs_at_scale.py --size 10m   # (d)

Times are the median of ``--repeat`` runs (default 3; the slow plain-Python run goes once unless
``--repeat-reference`` says otherwise). The machine's load average is printed with the figures:
timings on a shared machine move with it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench_common import ChildRun, print_load, run_child

SAMPLES_PER_PROMPT = 64
CHUNK_PROMPTS = 15_625  # prompts generated (and written) at a time: 1M rows per language per chunk
LANGUAGES_7 = ("da", "nl", "en", "fr", "de", "it", "es")


def croco_command() -> list[str]:
    """The installed `croco` entry point beside this Python, else the module."""
    entry = Path(sys.executable).with_name("croco")
    return [str(entry)] if entry.exists() else [sys.executable, "-m", "croco_pipeline.cli"]


# ---------------------------------------------------------------------------------------------------
# Synthetic data


def _text_column(rng, count: int, min_chars: int, max_chars: int, corpus):
    """``count`` strings cut at random places out of ``corpus`` (a uint8 array of ASCII text).

    Built as an Arrow string-view array: 16 bytes per string pointing into ``corpus`` (length, first
    four bytes, buffer 0, offset), so millions of strings cost no copying; polars takes it zero-copy.
    """
    import numpy as np
    import pyarrow as pa

    lengths = rng.integers(min_chars, max_chars + 1, count).astype(np.int32)
    starts = rng.integers(0, len(corpus) - max_chars, count).astype(np.int32)
    prefix = np.stack([corpus[starts + k] for k in range(4)], axis=1)  # every string is > 12 bytes
    views = np.zeros((count, 4), dtype=np.int32)
    views[:, 0] = lengths
    views[:, 1] = np.ascontiguousarray(prefix).view(np.int32)[:, 0]
    views[:, 3] = starts  # column 2, the buffer index, stays 0
    buffers = [None, pa.py_buffer(views.tobytes()), pa.py_buffer(corpus.tobytes())]
    return pa.Array.from_buffers(pa.string_view(), count, buffers)


def _corpus(rng, size: int = 4_000_000):
    """Word-like ASCII text: words of 1-10 letters from a 5,000-word vocabulary, spaces, some punctuation."""
    import numpy as np

    letters = np.frombuffer(b"etaoinshrdlucmfwypvbgkjqxz", dtype=np.uint8)
    vocabulary = [bytes(rng.choice(letters, rng.integers(1, 11))) for _ in range(5000)]
    words = rng.integers(0, len(vocabulary), size // 5)
    text = b" ".join(vocabulary[i] + (b"." if i % 17 == 0 else b"") for i in words)
    return np.frombuffer(text[:size], dtype=np.uint8)


def generate(path_stem: Path, prompts: int, languages: tuple[str, ...], seed: int, jsonl: bool) -> int:
    """Write ``<stem>.parquet`` (and ``<stem>.jsonl``) chunk by chunk; return the number of rows."""
    import numpy as np
    import polars as pl
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    corpus = _corpus(rng)
    writer = None
    jsonl_handle = open(path_stem.with_suffix(".jsonl"), "wb") if jsonl else None
    total = 0
    try:
        for first in range(0, prompts, CHUNK_PROMPTS):
            count = min(CHUNK_PROMPTS, prompts - first)
            pools = count * len(languages)
            rows = pools * SAMPLES_PER_PROMPT
            pool_of_row = np.repeat(np.arange(pools), SAMPLES_PER_PROMPT)
            prompt_text = pl.Series("prompt", _text_column(rng, pools, 30, 150, corpus))
            # rewards: a per-pool level plus noise, rounded to 3 decimals (ties happen), 0.01% missing
            reward = np.round(rng.normal(0, 1, pools)[pool_of_row] + rng.normal(0, 2, rows), 3)
            reward[rng.random(rows) < 1e-4] = np.nan
            frame = pl.DataFrame(
                {
                    "prompt_id": pl.Series(np.arange(first, first + count))
                    .cast(pl.String)
                    .str.zfill(7)
                    .str.replace(r"^", "p")
                    .gather(pool_of_row // len(languages)),
                    "language": pl.Series(list(languages)).gather(pool_of_row % len(languages)),
                    "sample_idx": np.tile(np.arange(SAMPLES_PER_PROMPT), pools),
                    "prompt": prompt_text.gather(pool_of_row),
                    "response": pl.Series("response", _text_column(rng, rows, 20, 200, corpus)),
                    "reward": pl.Series(reward).fill_nan(None),
                }
            )
            table = frame.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(path_stem.with_suffix(".parquet"), table.schema, compression="zstd")
            writer.write_table(table, row_group_size=256 * 1024)
            if jsonl_handle is not None:
                frame.write_ndjson(jsonl_handle)
            total += rows
    finally:
        if writer is not None:
            writer.close()
        if jsonl_handle is not None:
            jsonl_handle.close()
    return total


# ---------------------------------------------------------------------------------------------------
# The plain-Python reference (in-language, mean - 2 std): what one would write without a dataframe


def plain_python_pairs(scored_jsonl: str, out_jsonl: str, std: str = "statistics") -> None:
    """The rule in plain Python. ``std``: "statistics" uses statistics.fmean/pstdev (the obvious way,
    exact but slow); "fsum" computes mean and population std with math.fsum (a faster hand-rolled way)."""
    pools: dict[tuple[str, str], list[dict]] = defaultdict(list)
    with open(scored_jsonl, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            reward = row["reward"]
            if reward is None or not math.isfinite(reward):
                continue
            pools[(row["prompt_id"], row["language"])].append(row)
    with open(out_jsonl, "w", encoding="utf-8") as out:
        for (prompt_id, language), pool in sorted(pools.items()):
            if len(pool) < 2:
                continue
            pool.sort(key=lambda row: row["sample_idx"])
            rewards = [row["reward"] for row in pool]
            best = max(rewards)
            chosen = next(row for row in pool if row["reward"] == best)
            below = [row for row in pool if row["reward"] < best]
            if not below:
                continue
            if std == "statistics":
                mean, spread = statistics.fmean(rewards), statistics.pstdev(rewards)
            else:
                mean = math.fsum(rewards) / len(rewards)
                spread = math.sqrt(math.fsum((r - mean) ** 2 for r in rewards) / len(rewards))
            target = mean - 2 * spread
            rejected = min(below, key=lambda row: abs(row["reward"] - target))
            out.write(
                json.dumps(
                    {
                        "prompt_id": prompt_id,
                        "prompt": chosen["prompt"],
                        "prompt_language": language,
                        "chosen": chosen["response"],
                        "rejected": rejected["response"],
                        "chosen_score": best,
                        "rejected_score": rejected["reward"],
                        "chosen_language": language,
                        "rejected_language": language,
                        "chosen_sample_idx": chosen["sample_idx"],
                        "rejected_sample_idx": rejected["sample_idx"],
                        "pool_size": len(pool),
                        "target": "mean_minus_2sigma",
                        "target_value": target,
                        "pool_mean": mean,
                        "pool_std": spread,
                        "language": language,
                    }
                )
                + "\n"
            )


# ---------------------------------------------------------------------------------------------------
# Running cases in child processes


def timed(label: str, rows: int, command: list[str], repeat: int) -> ChildRun:
    """``repeat`` runs of one case in child processes: median wall and CPU seconds, the largest peak RSS."""
    runs = [run_child(command) for _ in range(repeat)]
    median = statistics.median(run.wall for run in runs)
    cpu = statistics.median(run.cpu for run in runs)
    peak = max(run.peak_rss_bytes for run in runs)
    shown = ", ".join(f"{run.wall:.2f}" for run in runs)
    print(
        f"{label}: {rows:,} rows, {median:.2f} s wall (median of {repeat}: {shown}), "
        f"{cpu:.2f} s CPU, peak RSS {peak / 2**30:.2f} GiB"
    )
    return ChildRun(median, cpu, peak, runs[-1].stdout, runs[-1].stderr)


def croco_pairs(scored: Path, out: Path, *extra: str) -> list[str]:
    return [*croco_command(), "pairs", "--scored", str(scored), "--out", str(out), *extra]


def same_pairs(croco_jsonl: Path, reference_jsonl: Path) -> str:
    import polars as pl

    keys = ["prompt_id", "language", "chosen_sample_idx", "rejected_sample_idx"]
    ours = pl.read_ndjson(croco_jsonl).select(keys)
    theirs = pl.read_ndjson(reference_jsonl).select(keys)
    matching = ours.join(theirs, on=keys, how="inner").height
    return f"{matching:,} of {ours.height:,} pairs identical to the plain-Python ones ({theirs.height:,} there)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--size", choices=("1m", "10m"), default="1m", help="1m: cases (a)-(c) (default); 10m: case (d)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per croco case (median reported)")
    parser.add_argument("--repeat-reference", type=int, default=1, help="runs of the plain-Python reference")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--workdir", type=Path, help="folder for the data (default: a temporary one, removed)")
    parser.add_argument("--reference", nargs=3, metavar=("SCORED_JSONL", "OUT_JSONL", "STD"), help=argparse.SUPPRESS)
    parser.add_argument("--read-only", metavar="SCORED_JSONL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.reference:  # child-process entry for case (b)'s plain-Python run
        plain_python_pairs(*args.reference)
        return 0
    if args.read_only:  # child-process entry for case (b)'s floor: reading, nothing else
        from croco_pipeline.commands.pairs import read_scored

        read_scored(args.read_only)
        return 0

    with tempfile.TemporaryDirectory(prefix="croco-pairs-bench-", dir=args.workdir) as tmp:
        folder = Path(tmp)
        print_load("start")
        if args.size == "10m":
            started = time.perf_counter()
            rows = generate(folder / "s10m", 156_250, ("da",), args.seed, jsonl=False)
            size = (folder / "s10m.parquet").stat().st_size
            print(f"generated {rows:,} rows ({size / 2**20:.0f} MiB Parquet) in {time.perf_counter() - started:.0f} s")
            run = timed(
                "(d) in-language, Parquet -> Parquet",
                rows,
                croco_pairs(folder / "s10m.parquet", folder / "pairs10m.parquet"),
                args.repeat,
            )
            print("    " + run.stdout.strip().replace("\n", "\n    "))
        else:
            started = time.perf_counter()
            rows_1 = generate(folder / "s1", 15_625, ("da",), args.seed, jsonl=True)
            rows_7 = generate(folder / "s7", 2_232, LANGUAGES_7, args.seed + 1, jsonl=False)
            sizes = {name: (folder / name).stat().st_size / 2**20 for name in ("s1.parquet", "s1.jsonl", "s7.parquet")}
            print(
                f"generated in {time.perf_counter() - started:.0f} s: "
                + ", ".join(f"{name} {mib:.0f} MiB" for name, mib in sizes.items())
            )

            run_a = timed(
                "(a) in-language, Parquet -> Parquet",
                rows_1,
                croco_pairs(folder / "s1.parquet", folder / "a.parquet"),
                args.repeat,
            )
            run_b = timed(
                "(b) in-language, JSONL -> JSONL, croco pairs",
                rows_1,
                croco_pairs(folder / "s1.jsonl", folder / "b.jsonl"),
                args.repeat,
            )
            floor = timed(
                "(b) floor: start Python, import polars, read the JSONL (no pairing, no output)",
                rows_1,
                [sys.executable, __file__, "--read-only", str(folder / "s1.jsonl")],
                args.repeat,
            )
            for std in ("statistics", "fsum"):
                reference = timed(
                    f"(b) in-language, JSONL -> JSONL, plain Python ({std})",
                    rows_1,
                    [
                        sys.executable,
                        __file__,
                        "--reference",
                        str(folder / "s1.jsonl"),
                        str(folder / f"b_{std}.jsonl"),
                        std,
                    ],
                    args.repeat_reference,
                )
                print(
                    f"    speed-up of croco pairs: {reference.wall / run_b.wall:.1f}x wall, "
                    f"{reference.cpu / run_b.cpu:.1f}x CPU time "
                    f"(reading alone: {reference.wall / floor.wall:.1f}x wall); "
                    + same_pairs(folder / "b.jsonl", folder / f"b_{std}.jsonl")
                )
            run_c = timed(
                "(c) cross-language, 7 languages, Parquet -> Parquet",
                rows_7,
                croco_pairs(
                    folder / "s7.parquet",
                    folder / "c.parquet",
                    "--scope",
                    "cross-language",
                    "--languages",
                    ",".join(LANGUAGES_7),
                ),
                args.repeat,
            )
            for label, run in (("(a)", run_a), ("(c)", run_c)):
                print(f"    {label} " + run.stdout.strip().replace("\n", "\n        "))
        print_load("end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
