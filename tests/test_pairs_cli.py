"""`croco pairs` run as a real command (subprocess), plus the file helpers it relies on."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from croco_pipeline.commands.pairs import read_scored
from croco_pipeline.core.io import tables
from croco_pipeline.core.pairs.rule import PAIR_SCHEMA, SFT_SCHEMA, UNPAIRED_SCHEMA

REPO = Path(__file__).resolve().parents[1]


def rows(pools: dict[tuple[str, str], list[float]]) -> list[dict]:
    return [
        {
            "prompt_id": pid,
            "language": lang,
            "sample_idx": idx,
            "prompt": f"{pid}/{lang}?",
            "response": f"{pid}/{lang}/{idx}",
            "reward": reward,
            "model": "policy-x",
        }
        for (pid, lang), rewards in pools.items()
        for idx, reward in enumerate(rewards)
    ]


POOLS = {
    ("p1", "da"): [1.0, 4.0, 2.0],
    ("p1", "nl"): [3.0, 0.5],
    ("p2", "da"): [2.0, 2.0],  # all equal: no pair
    ("p3", "da"): [5.0],  # pool of one
}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))  # json.dumps writes NaN as NaN
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_parquet_in_parquet_out_with_companions(tmp_path, croco):
    scored = tmp_path / "scored.parquet"
    pl.DataFrame(rows(POOLS)).write_parquet(scored)
    done = croco(
        "pairs",
        "--scored",
        scored,
        "--out",
        tmp_path / "pairs.parquet",
        "--unpaired-out",
        tmp_path / "unpaired.jsonl",
        "--sft-out",
        tmp_path / "sft.parquet",
    )
    assert done.returncode == 0, done.stderr
    assert "pairs written: 2" in done.stdout
    assert "unpaired pools: 2 (no_sample_below_best 1, pool_too_small 1)" in done.stdout
    assert "dropped non-finite rewards: 0" in done.stdout and "seconds:" in done.stdout

    pairs = pl.read_parquet(tmp_path / "pairs.parquet")
    assert pairs.schema == pl.Schema(PAIR_SCHEMA)
    assert pairs.select("prompt_id", "language", "chosen", "rejected").rows() == [
        ("p1", "da", "p1/da/1", "p1/da/0"),  # mean 7/3, std 1.247 -> target -0.16: 1.0 is closest
        ("p1", "nl", "p1/nl/0", "p1/nl/1"),
    ]
    unpaired = pl.read_ndjson(tmp_path / "unpaired.jsonl")
    assert unpaired.select("prompt_id", "reason").rows() == [("p2", "no_sample_below_best"), ("p3", "pool_too_small")]
    assert list(unpaired.columns) == list(UNPAIRED_SCHEMA)
    sft = pl.read_parquet(tmp_path / "sft.parquet")
    assert sft.schema == pl.Schema(SFT_SCHEMA) and sft.height == 4
    assert leftovers(tmp_path) == []  # no temporary files left behind


def test_jsonl_with_nan_tokens_cross_language_random(tmp_path, croco):
    records = rows({("p1", "da"): [1.0, math.nan, 2.0], ("p1", "nl"): [6.0, 0.0], ("p1", "en"): [9.0, 9.0]})
    scored = write_jsonl(tmp_path / "scored.jsonl", records)
    args = [
        "pairs",
        "--scored",
        scored,
        "--scope",
        "cross-language",
        "--languages",
        "nl,da",
        "--target",
        "min",
        "--prompt-source",
        "random",
        "--seed",
        "11",
    ]
    done = croco(*args, "--out", tmp_path / "a.jsonl")
    assert done.returncode == 0, done.stderr
    assert "dropped non-finite rewards: 1" in done.stdout  # the NaN in da; en is not configured
    pair = pl.read_ndjson(tmp_path / "a.jsonl").row(0, named=True)
    assert (pair["chosen"], pair["rejected"], pair["pool_size"]) == ("p1/nl/0", "p1/nl/1", 4)
    assert pair["prompt"] == f"p1/{pair['prompt_language']}?"
    again = croco(*args, "--out", tmp_path / "b.jsonl")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing_file", "no such file"),
        ("bad_extension", "unknown file type '.csv'"),
        ("missing_columns", "missing column(s) reward; columns found: prompt_id, language, sample_idx"),
        ("broken_line", "line 3 is not valid JSON"),
        ("non_finite_fail", "1 scored row(s) have a NaN, infinite or missing reward: ('p1', 'da', 1)"),
    ],
)
def test_errors_are_one_line_with_status_2_and_leave_no_output(tmp_path, setup, expected, croco):
    scored = tmp_path / "scored.jsonl"
    records = rows(POOLS)
    extra: list[str] = []
    if setup == "missing_file":
        scored = tmp_path / "nowhere.jsonl"
    elif setup == "bad_extension":
        scored = tmp_path / "scored.csv"
        scored.write_text("prompt_id\n")
    elif setup == "missing_columns":
        write_jsonl(scored, [{k: v for k, v in r.items() if k != "reward"} for r in records])
    elif setup == "broken_line":
        write_jsonl(scored, records)
        lines = scored.read_text().splitlines(keepends=True)
        lines[2] = lines[2][:-5] + "\n"  # cut the closing of line 3
        scored.write_text("".join(lines))
    elif setup == "non_finite_fail":
        records[1]["reward"] = math.inf
        write_jsonl(scored, records)
        extra = ["--non-finite", "fail"]
    out = tmp_path / "pairs.parquet"
    done = croco("pairs", "--scored", scored, "--out", out, *extra)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("croco pairs: error: ")
    assert expected in done.stderr
    assert not out.exists() and leftovers(tmp_path) == []


def test_bad_output_extension_fails_before_reading(tmp_path, croco):
    done = croco("pairs", "--scored", tmp_path / "nowhere.parquet", "--out", tmp_path / "pairs.txt")
    assert done.returncode == 2 and "pairs.txt: unknown file type '.txt'" in done.stderr


def test_help_lists_the_options_and_the_command_does_not_load_polars_to_parse(croco):
    done = croco("pairs", "--help")
    assert done.returncode == 0
    for option in (
        "--scored",
        "--out",
        "--scope",
        "--target",
        "--prompt-source",
        "--languages",
        "--seed",
        "--non-finite",
        "--unpaired-out",
        "--sft-out",
    ):
        assert option in done.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, argparse; from croco_pipeline.commands import pairs; "
            "pairs.add_arguments(argparse.ArgumentParser()); "
            "heavy = [m for m in ('polars', 'torch', 'dagster', 'transformers') if m in sys.modules]; print(heavy)",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert probe.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------------
# reading and writing the files


def test_write_table_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "pairs.parquet"
    pl.DataFrame({"a": [1]}).write_parquet(target)
    before = target.read_bytes()

    def broken_write(frame, path, fmt, storage_options):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(tables, "_write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        tables.write_table(pl.DataFrame({"a": [2]}), target)
    assert target.read_bytes() == before and leftovers(tmp_path) == []


def test_jsonl_reader_keeps_types_across_lines_and_skips_blank_lines(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(
        '{"prompt_id": 1, "reward": 1, "sample_idx": 0}\n\n{"prompt_id": "p2", "reward": 2.5, "sample_idx": 1}\n'
    )
    frame = read_scored(path)
    assert frame.schema["prompt_id"] == pl.String and frame.schema["reward"] == pl.Float64
    assert frame["prompt_id"].to_list() == ["1", "p2"]


def test_a_hive_partitioned_folder_is_read_as_one_table(tmp_path, croco):
    # the layout the pipeline writes: <base>/reward_scores/language=xx/part-0.parquet, no language column
    for language in ("da", "nl"):
        part = tmp_path / "reward_scores" / f"language={language}"
        part.mkdir(parents=True)
        pl.DataFrame(rows({("p1", language): [1.0, 2.0]})).drop("language").write_parquet(part / "part-0.parquet")
    done = croco("pairs", "--scored", tmp_path / "reward_scores", "--out", tmp_path / "pairs.jsonl")
    assert done.returncode == 0, done.stderr
    pairs = pl.read_ndjson(tmp_path / "pairs.jsonl")
    assert pairs.select("language", "chosen").rows() == [("da", "p1/da/1"), ("nl", "p1/nl/1")]


def test_other_jsonl_keys_are_not_read_whatever_they_hold(tmp_path, croco):
    # Scorers add their own fields; one whose type changes from line to line is not a table column,
    # and croco pairs has no use for it: only the six scored columns are read.
    records = rows(POOLS)
    for number, record in enumerate(records):
        record["meta"] = {"judge": "rm-1"} if number % 2 else [number, "retry"]
    scored = write_jsonl(tmp_path / "scored.jsonl", records)
    frame = read_scored(scored)
    assert frame.columns == ["prompt_id", "language", "sample_idx", "prompt", "response", "reward"]
    done = croco("pairs", "--scored", scored, "--out", tmp_path / "pairs.jsonl")
    assert done.returncode == 0, done.stderr
    pairs = pl.read_ndjson(tmp_path / "pairs.jsonl")
    assert pairs.select("prompt_id", "language", "chosen", "rejected").rows() == [
        ("p1", "da", "p1/da/1", "p1/da/0"),
        ("p1", "nl", "p1/nl/0", "p1/nl/1"),
    ]
