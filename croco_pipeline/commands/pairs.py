"""`croco pairs`: build preference pairs from any scored file (Parquet or JSONL).

    croco pairs --scored scored.parquet --out pairs.parquet
    croco pairs --scored scored.jsonl --out pairs.jsonl --scope cross-language --languages da,nl,en \\
        --prompt-source random --seed 3 --unpaired-out unpaired.jsonl --sft-out best_of_n.jsonl

The rule is ``croco_pipeline.core.pairs.rule`` (docs/design.md §1.4). File formats follow the extensions
(.parquet/.pq, .jsonl/.ndjson); ``--scored`` may also be a folder of Parquet files such as the
pipeline's ``reward_scores/language=xx/`` partitions. ``s3://`` paths are handed to polars as they are.
Outputs are written atomically (no partial file on error). Prints a short summary; on bad input prints one
line to stderr and exits with status 2. Nothing heavy is imported, and polars only once the command runs, so
``croco --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import time

# Kept in step with croco_pipeline.core.pairs.rule (not imported here: that would load polars at --help).
_SCOPES = ("in-language", "cross-language")
_TARGETS = ("mean_minus_2sigma", "q1", "min")
_PROMPT_SOURCES = ("chosen", "rejected", "random")
_NON_FINITE = ("drop", "fail")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scored",
        required=True,
        metavar="FILE",
        help="scored samples: .parquet, .jsonl, or a folder of Parquet files (language=xx/ folders become a column)",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="pairs to write (.parquet or .jsonl)")
    parser.add_argument(
        "--scope", choices=_SCOPES, default="in-language", help="pool per (prompt, language) or per prompt"
    )
    parser.add_argument(
        "--target", choices=_TARGETS, default="mean_minus_2sigma", help="what the rejected reward is closest to"
    )
    parser.add_argument(
        "--prompt-source",
        choices=_PROMPT_SOURCES,
        default="chosen",
        help="cross-language: the prompt's language is the chosen's, the rejected's or a seeded coin flip",
    )
    parser.add_argument(
        "--languages",
        metavar="CODES",
        help="comma-separated language codes to use, in tie-break order (default: all, sorted)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --prompt-source random (default 0)")
    parser.add_argument(
        "--non-finite", choices=_NON_FINITE, default="drop", help="drop (and count) or fail on NaN/inf rewards"
    )
    parser.add_argument("--unpaired-out", metavar="FILE", help="also write the pools that gave no pair, and why")
    parser.add_argument("--sft-out", metavar="FILE", help="also write the best-of-N sample per pool (SFT data)")


def _parse_languages(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    codes = tuple(code.strip() for code in text.split(","))
    if not all(codes):
        raise ValueError(f"--languages {text!r}: give comma-separated codes such as da,nl,en")
    return codes


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    import polars as pl

    from croco_pipeline.core.io import tables
    from croco_pipeline.core.pairs.rule import PairingConfig, build_pairs, pairs_and_best_of_n

    try:
        outputs = [path for path in (args.out, args.unpaired_out, args.sft_out) if path]
        for path in outputs:  # fail on a bad extension before spending time on the input
            tables.table_format(path)
        if len(set(map(str, outputs))) != len(outputs):
            raise ValueError("--out, --unpaired-out and --sft-out must be different files")
        config = PairingConfig(
            scope=args.scope,
            target=args.target,
            prompt_source=args.prompt_source,
            languages=_parse_languages(args.languages),
            seed=args.seed,
            non_finite=args.non_finite,
        )
        scored = read_scored(args.scored)
        if args.sft_out:
            result, sft = pairs_and_best_of_n(scored, config)
        else:
            result, sft = build_pairs(scored, config), None
        tables.write_table(result.pairs, args.out)
        if args.unpaired_out:
            tables.write_table(result.unpaired, args.unpaired_out)
        if sft is not None:
            tables.write_table(sft, args.sft_out)
    except (ValueError, OSError, RuntimeError, pl.exceptions.PolarsError) as error:
        # ValueError covers bad settings, missing columns, broken lines and non-finite rewards;
        # RuntimeError a scored file that changed while it was being read.
        print(f"croco pairs: error: {_one_line(error)}", file=sys.stderr)
        return 2

    reasons = result.reason_counts()
    unpaired = ", ".join(f"{reason} {count}" for reason, count in reasons.items()) or "none"
    print(f"pairs written: {result.pairs.height} -> {args.out} ({config.scope}, target {config.target})")
    print(
        f"unpaired pools: {result.unpaired.height} ({unpaired})"
        + (f" -> {args.unpaired_out}" if args.unpaired_out else "")
    )
    if sft is not None:
        print(f"best-of-N records: {sft.height} -> {args.sft_out}")
    print(f"dropped non-finite rewards: {result.dropped_non_finite}")
    print(f"seconds: {time.perf_counter() - started:.2f}")
    return 0


def read_scored(path, *, storage_options: dict | None = None):
    """A scored table as pairing reads it: a LazyFrame over Parquet; of JSONL, just the columns of
    ``SCORED_COLUMNS``, typed as pairing expects (ids such as ``1`` and ``"p1"`` both read as text)."""
    from croco_pipeline.core.io.tables import read_table
    from croco_pipeline.core.pairs.rule import SCORED_COLUMNS

    return read_table(path, schema_overrides=SCORED_COLUMNS, only_overridden=True, storage_options=storage_options)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, FileNotFoundError) and error.filename and str(error.filename) not in text:
        text = f"{error.filename}: {text}"
    return text
