"""How often the base policy already answers in each language: the measure for choosing the demo's
languages. A language it answers in most of the time leaves CroCo no room to raise the share (the demo's
criterion is +0.10), and one it never answers in gives the pairs nothing in the language to prefer.

For every language, the held-out prompts (the shipped ones, or those of ``--prompts`` for a language
croco ships none for; ``benchmarks/data/screening_prompts.jsonl`` holds 16 per language for ca, fi, pl,
pt and ro) are answered ``--n`` times by ``croco generate`` (the pipeline's own sampling, "Please respond
in {Language}" appended as in the demo), and each answer's language is identified by the independent
identifier (py3langid, the demo's share) and by the reward's fastText. The mean reward is the demo
scorer's (language fidelity):

    python benchmarks/base_language_shares.py --languages da,cy,mt,no,ga,sv,gl \
        --languages-file ca,fi,pl,pt,ro --n 8 --seed 0
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
from bench_common import REPO_ROOT, print_load

from croco_pipeline.core.evaluation.heldout import shipped_heldout_prompts
from croco_pipeline.core.languages.identify import detect, detect_independent
from croco_pipeline.core.models.reward_scorers import LanguageFidelityScorer

SCREENING_PROMPTS = REPO_ROOT / "benchmarks" / "data" / "screening_prompts.jsonl"


def _prompts(shipped: list[str], from_file: list[str], prompts_file: Path) -> pl.DataFrame:
    tables = [shipped_heldout_prompts(code).with_columns(language=pl.lit(code)) for code in shipped]
    if from_file:
        table = pl.read_ndjson(prompts_file).filter(pl.col("language").is_in(from_file))
        missing = sorted(set(from_file) - set(table["language"].unique()))
        if missing:
            sys.exit(f"{prompts_file} has no prompts for {', '.join(missing)}")
        tables.append(table)
    rows = pl.concat([t.select("prompt_id", "language", "prompt") for t in tables])
    return rows.with_columns(prompt_id=pl.col("language") + "-" + pl.col("prompt_id"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--languages", default="", help="languages with shipped prompts (comma-separated)")
    parser.add_argument("--languages-file", default="", help="languages whose prompts come from --prompts")
    parser.add_argument("--prompts", type=Path, default=SCREENING_PROMPTS, help="JSONL: prompt_id, language, prompt")
    parser.add_argument("--n", type=int, default=8, help="answers per prompt")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shipped = [c for c in args.languages.split(",") if c]
    from_file = [c for c in args.languages_file.split(",") if c]
    prompts = _prompts(shipped, from_file, args.prompts)

    print_load("start")
    with tempfile.TemporaryDirectory() as folder:
        source, answers_file = Path(folder) / "prompts.jsonl", Path(folder) / "answers.parquet"
        prompts.write_ndjson(source)
        command = [sys.executable, "-m", "croco_pipeline.cli", "generate", "--prompts", str(source)]
        command += ["--out", str(answers_file), "--n", str(args.n), "--seed", str(args.seed)]
        subprocess.run(command, check=True, cwd=REPO_ROOT)
        answers = pl.read_parquet(answers_file)
    print_load("end")

    scorer = LanguageFidelityScorer()
    print("| language | answers | share, py3langid | share, fastText | identifiers agree | mean demo reward |")
    print("|---|---|---|---|---|---|")
    for code in shipped + from_file:
        rows = answers.filter(pl.col("language") == code)
        texts, reasons = rows["response"].to_list(), rows["finish_reason"].to_list()
        independent = [detect_independent(t)[0] for t in texts]
        fasttext = [detect(t)[0] for t in texts]
        rewards = [scorer.score_one(t, code, r) for t, r in zip(texts, reasons)]
        share = sum(c == code for c in independent) / len(texts)
        share_ft = sum(c == code for c in fasttext) / len(texts)
        agree = sum(a == b for a, b in zip(independent, fasttext)) / len(texts)
        print(
            f"| {code} | {len(texts)} | {share:.2f} | {share_ft:.2f} | {agree:.0%} | {statistics.mean(rewards):+.3f} |"
        )


if __name__ == "__main__":
    main()
