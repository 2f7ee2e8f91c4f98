"""`croco generate` on the tiny policy: both backends, rows = prompts x n in the `generations` schema, the
same rows as `sample_answers` gives (transformers), the profile's defaults, and bad input that fails
clearly without writing anything.

The transformers runs call the command in this process (``cli.main``); the vLLM run starts it as a
user would, in a child process (vLLM's engine starts worker processes of its own)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from croco_pipeline import cli
from croco_pipeline.core.models.lifetime import open_policy_generator
from croco_pipeline.core.sampling.config import SamplingConfig
from croco_pipeline.core.sampling.samples import GENERATION_COLUMNS, GENERATION_SCHEMA, sample_answers
from croco_pipeline.core.settings import RunSettings

REPO_ROOT = Path(__file__).resolve().parents[1]

PROMPTS = [
    {"prompt_id": "p2", "language": "nl", "prompt": "Hoe gaat het?"},
    {"prompt_id": "p1", "language": "da", "prompt": "Hvad hedder du?"},
    {"prompt_id": "p3", "language": "da", "prompt": "Fortæl mig om havet."},
    {"prompt_id": "p1", "language": "nl", "prompt": "Wat is je naam?"},
]


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded profile and no overrides from the caller's environment (restored afterwards)."""
    for name in ("CROCO_PROFILE", "CROCO_POLICY_MODEL", "CROCO_GENERATOR_BACKEND", "CROCO_KEEP_MODELS_LOADED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "WARNING")  # the command sets it when unset; keep it to this test


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def _generate(*args: str) -> int:
    return cli.main(["generate", *map(str, args)])


def test_help_shows_defaults_and_an_example(capsys) -> None:

    with pytest.raises(SystemExit) as exit_info:
        _generate("--help")
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for expected in (
        "--prompts",
        "--n",
        "--max-new-tokens",
        "--temperature",
        "--top-p",
        "--seed",
        "--language",
        "--out",
        "--backend",
        "--respond-in-language",
        f"embedded: {RunSettings().samples_per_prompt}",  # the schema's default: the embedded configuration
        "examples:",
    ):
        assert expected in text, expected


def test_parsing_the_options_loads_nothing_heavy() -> None:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, argparse; from croco_pipeline.commands import generate; "
            "generate.add_arguments(argparse.ArgumentParser()); "
            "print([m for m in ('polars', 'torch', 'dagster', 'transformers', 'vllm') if m in sys.modules])",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=True,
    )
    assert probe.stdout.strip() == "[]"


def test_without_n_each_language_gets_the_profiles_number_of_answers(
    tiny_policy_path: Path, tmp_path: Path, capsys
) -> None:
    """As the pipeline samples: the embedded profile gives Maltese 32 answers a prompt and Danish 16."""
    prompts = _write_jsonl(
        tmp_path / "prompts.jsonl",
        [
            {"prompt_id": "p1", "language": "da", "prompt": "Hej"},
            {"prompt_id": "p1", "language": "mt", "prompt": "Bongu"},
        ],
    )
    out = tmp_path / "samples.parquet"
    common = ["--prompts", prompts, "--model", tiny_policy_path, "--backend", "transformers", "--max-new-tokens", 2]
    assert _generate(*common, "--out", out, "--max-model-len", 512) == 0
    counts = pl.read_parquet(out).group_by("language").len().sort("language").rows()
    assert counts == [("da", 16), ("mt", 32)]
    assert "48 rows (2 prompts x (da 16, mt 32), 2 language(s))" in capsys.readouterr().out
    assert _generate(*common, "--out", out, "--max-model-len", 512, "--n", 2) == 0  # --n: every language
    assert pl.read_parquet(out).group_by("language").len().sort("language").rows() == [("da", 2), ("mt", 2)]


def test_transformers_rows_are_those_of_sample_answers(tiny_policy_path: Path, tmp_path: Path, capsys) -> None:
    prompts = _write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    out = tmp_path / "out" / "samples.parquet"
    model = str(tiny_policy_path)

    assert (
        _generate(
            "--prompts",
            prompts,
            "--out",
            out,
            "--model",
            model,
            "--backend",
            "transformers",
            "--n",
            3,
            "--max-new-tokens",
            8,
            "--seed",
            5,
            "--max-model-len",
            512,
        )
        == 0
    )

    written = pl.read_parquet(out)
    assert written.height == len(PROMPTS) * 3
    assert dict(written.schema) == GENERATION_SCHEMA and written.columns == GENERATION_COLUMNS
    assert written["num_tokens"].is_between(1, 8).all()
    assert set(written["finish_reason"]) <= {"stop", "length"}
    assert written["model"].unique().to_list() == [model]
    assert "12 rows (4 prompts x 3, 2 language(s))" in capsys.readouterr().out

    # The same answers, row for row, as the generations asset's own function with the same generator and seed.
    sampling = SamplingConfig(n=3, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=5)
    table = pl.DataFrame(PROMPTS).sort("language", "prompt_id")
    with open_policy_generator(model=model, backend="transformers", max_model_len=512, seed=5) as generator:
        expected = pl.concat(
            [
                sample_answers(
                    generator,
                    table.filter(pl.col("language") == language).select("prompt_id", "prompt"),
                    language,
                    sampling,
                    respond_in_language=True,
                    model_label=model,
                )
                for language in ("da", "nl")
            ]
        )
    assert_frame_equal(written, expected)
    # sampled, not one answer repeated: the answers to a prompt differ
    assert written.group_by("language", "prompt_id").agg(pl.col("response").n_unique())["response"].max() > 1


def test_profile_defaults_and_language_option(
    tiny_policy_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tiny profile: its policy (CROCO_POLICY_MODEL), 3 samples of at most 8 tokens; CSV without a language column.
    monkeypatch.setenv("CROCO_PROFILE", "tiny")
    monkeypatch.setenv("CROCO_POLICY_MODEL", str(tiny_policy_path))
    prompts = tmp_path / "prompts.csv"
    prompts.write_text('prompt_id,prompt\nq1,Hej\nq2,"Hvad er klokken, tak?"\n', encoding="utf-8")
    out = tmp_path / "samples.parquet"

    assert (
        _generate(
            "--prompts",
            prompts,
            "--out",
            out,
            "--language",
            "da",
            "--backend",
            "transformers",
            "--no-respond-in-language",
        )
        == 0
    )

    written = pl.read_parquet(out)
    assert written.height == 2 * 3
    assert written["language"].unique().to_list() == ["da"]
    assert written["model"].unique().to_list() == [str(tiny_policy_path)]
    assert written["num_tokens"].is_between(1, 8).all()
    assert written["prompt"].unique(maintain_order=True).to_list() == ["Hej", "Hvad er klokken, tak?"]


@pytest.mark.system  # a Dagster step (or croco child process) run whole
def test_vllm_backend(tiny_policy_path: Path, tmp_path: Path, croco) -> None:
    prompts = tmp_path / "prompts.parquet"
    pl.DataFrame(PROMPTS).write_parquet(prompts)
    out = tmp_path / "samples.parquet"
    result = croco(
        "generate",
        *("--prompts", prompts, "--out", out, "--model", tiny_policy_path, "--backend", "vllm"),
        *("--n", 4, "--max-new-tokens", 8, "--max-model-len", 512),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "16 rows (4 prompts x 4, 2 language(s))" in result.stdout
    assert "tok/s" in result.stdout
    assert "on vllm" in result.stderr

    written = pl.read_parquet(out)
    assert written.height == len(PROMPTS) * 4
    assert dict(written.schema) == GENERATION_SCHEMA and written.columns == GENERATION_COLUMNS
    assert written.select("language", "prompt_id").unique().height == len(PROMPTS)
    assert sorted(set(written["sample_idx"])) == [0, 1, 2, 3]
    assert written["num_tokens"].is_between(1, 8).all()
    assert set(written["finish_reason"]) <= {"stop", "length"}
    length = written.filter(pl.col("finish_reason") == "length")
    assert (length["num_tokens"] == 8).all()


_BAD_FILES = {
    "missing prompt": (
        '{"prompt_id": "a", "prompt": "Hi", "language": "da"}\n{"prompt_id": "b", "language": "da"}\n',
        ["prompts.jsonl, line 2", "missing prompt"],
    ),
    "no language": ('{"prompt_id": "a", "prompt": "Hi"}\n', ["line 1", "missing language", "--language"]),
    "unknown language": ('{"prompt_id": "a", "prompt": "Hi", "language": "xx"}\n', ["line 1", "xx"]),
    "broken json": ('{"prompt_id": "a", "prompt": "Hi", "language": "da"}\n{"prompt_id": \n', ["line 2", "JSON"]),
    "duplicate ids": (
        '{"prompt_id": "a", "prompt": "Hi", "language": "da"}\n'
        '{"prompt_id": "a", "prompt": "Hej", "language": "da"}\n',
        ["duplicate", "a/da"],
    ),
    "empty": ("\n", ["empty"]),
}


@pytest.mark.parametrize("case", sorted(_BAD_FILES))
def test_bad_prompt_file_fails_clearly_and_writes_nothing(
    case: str, tiny_policy_path: Path, tmp_path: Path, capsys
) -> None:
    text, expected = _BAD_FILES[case]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(text, encoding="utf-8")
    out = tmp_path / "out" / "samples.parquet"

    assert _generate("--prompts", prompts, "--out", out, "--model", tiny_policy_path, "--backend", "transformers") == 2

    error = capsys.readouterr().err
    assert error.startswith("croco generate: error: ") and error.count("\n") == 1, error
    assert str(prompts) in error
    for part in expected:
        assert part in error, (part, error)
    assert not out.exists() and not out.parent.exists()


def test_other_bad_input_fails_before_loading_the_model(tmp_path: Path, capsys) -> None:
    prompts = _write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    (tmp_path / "prompts.txt").write_text("prompt_id,prompt\n", encoding="utf-8")
    cases = [
        (["--prompts", tmp_path / "missing.jsonl", "--out", tmp_path / "a.parquet"], "missing.jsonl: no such file"),
        (["--prompts", prompts, "--out", tmp_path / "a.txt"], "unknown file type '.txt'"),
        (
            ["--prompts", tmp_path / "prompts.txt", "--out", tmp_path / "a.parquet"],
            "unsupported prompt file type '.txt'",
        ),
        (["--prompts", prompts, "--out", tmp_path / "a.parquet", "--top-p", "0"], "top_p must be in (0, 1]"),
        (["--prompts", prompts, "--out", tmp_path / "a.parquet", "--adapter", tmp_path], "no adapter_config.json"),
    ]
    for args, expected in cases:
        # no model is named: these must fail before a model would be resolved or loaded
        assert _generate(*args, "--model", tmp_path / "no-such-model") == 2
        error = capsys.readouterr().err
        assert expected in error, (expected, error)
    assert list(tmp_path.glob("*.parquet")) == [] and list(tmp_path.glob("a.*")) == []


def test_a_prompt_too_long_fails_after_loading_and_keeps_an_existing_output(
    tiny_policy_path: Path, tmp_path: Path, capsys
) -> None:
    prompts = _write_jsonl(
        tmp_path / "prompts.jsonl",
        [
            {"prompt_id": "short", "prompt": "Hi", "language": "da"},
            {"prompt_id": "long", "prompt": "word " * 200, "language": "da"},
        ],
    )
    out = tmp_path / "samples.parquet"
    out.write_bytes(b"an earlier result")

    assert (
        _generate(
            "--prompts",
            prompts,
            "--out",
            out,
            "--model",
            tiny_policy_path,
            "--backend",
            "transformers",
            "--max-model-len",
            64,
        )
        == 2
    )

    err = capsys.readouterr().err
    assert "new tokens it needs a context of" in err and "is opened with 64" in err and "--max-model-len" in err
    assert out.read_bytes() == b"an earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.jsonl", "samples.parquet"]


def test_argument_errors(capsys) -> None:
    for args in (["--n", "0"], ["--max-new-tokens", "-1"], ["--backend", "onnx"]):
        with pytest.raises(SystemExit) as exit_info:
            _generate("--prompts", "p.jsonl", "--out", "o.parquet", *args)
        assert exit_info.value.code == 2
        assert "croco generate: error: argument" in capsys.readouterr().err


def test_adapter(tiny_policy_path: Path, tiny_lora_adapter_path: Path, tmp_path: Path) -> None:
    prompts = _write_jsonl(tmp_path / "prompts.jsonl", PROMPTS[:2])
    model, adapter = str(tiny_policy_path), str(tiny_lora_adapter_path)
    common = ["--prompts", prompts, "--model", model, "--backend", "transformers", "--n", 2, "--max-new-tokens", 8]
    assert _generate(*common, "--out", tmp_path / "base.parquet") == 0
    assert _generate(*common, "--adapter", adapter, "--out", tmp_path / "tuned.parquet") == 0

    base, tuned = pl.read_parquet(tmp_path / "base.parquet"), pl.read_parquet(tmp_path / "tuned.parquet")
    assert tuned.height == base.height == 4
    assert tuned["response"].to_list() != base["response"].to_list()
    assert tuned["config_hash"][0] != base["config_hash"][0]  # the adapter is part of the fingerprint
    sampling = SamplingConfig(n=2, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=0)
    table = pl.DataFrame(PROMPTS[:2]).sort("language", "prompt_id")
    with open_policy_generator(model=model, backend="transformers", max_model_len=1024, seed=0) as generator:
        expected = pl.concat(
            [
                sample_answers(
                    generator,
                    table.filter(pl.col("language") == language).select("prompt_id", "prompt"),
                    language,
                    sampling,
                    respond_in_language=True,
                    model_label=model,
                    adapter_path=adapter,
                )
                for language in ("da", "nl")
            ]
        )
    assert_frame_equal(tuned, expected)
