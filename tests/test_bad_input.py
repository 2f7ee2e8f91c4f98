"""Bad input, run through Dagster as a user would: every failure names the problem, and no partial
Parquet file (final table, temporary file or staged chunk) is left behind."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterInvalidConfigError, materialize, validate_run_config

from croco_pipeline.definitions import ALL_ASSETS, build_definitions
from croco_pipeline.partitions import language_partitions

SCORE_AND_PAIR = ["reward_scores", "preference_pairs", "unpaired_prompts", "sft_records"]
POISON_WORD = " zebra"  # the NaN reward model scores NaN for any conversation holding this token


# Added to the tiny environment (the `tiny_environ` fixture): no vLLM engine start for input checks.
TRANSFORMERS = {"CROCO_GENERATOR_BACKEND": "transformers"}


def _materialize(environ: dict, selection: list[str], language: str = "da", run_config: dict | None = None):
    definitions = build_definitions(environ=environ)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(language_partitions.name, [language])
    return materialize(
        ALL_ASSETS,
        selection=selection,
        partition_key=language,
        instance=instance,
        resources=definitions.resources,
        run_config=run_config,
        raise_on_error=False,
    )


def _settings(**overrides) -> dict:
    """Run config that changes only these settings (the tiny profile's others stay)."""
    return {"resources": {"settings": {"config": overrides}}}


def _failure(result) -> str:
    """What the run's failed step says: each error of the chain as `Class: message`, one per line."""
    assert not result.success
    failures = [event for event in result.all_events if event.event_type == DagsterEventType.STEP_FAILURE]
    assert failures, "the run failed but no step failed"
    lines = []
    error = failures[0].step_failure_data.error
    while error is not None:
        lines.append(f"{error.cls_name}: {error.message.strip()}")
        error = error.cause
    return "\n".join(lines)


def _parquet_files(storage: Path) -> list[str]:
    """Every Parquet file (final, staged or temporary) under the storage base."""
    if not storage.exists():
        return []
    return sorted(str(p.relative_to(storage)) for p in storage.rglob("*") if p.is_file() and ".parquet" in p.name)


def _prompt_file(tmp_path: Path, text: str, name: str = "prompts.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _rows(*rows: dict) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


GOOD_ROWS = [
    {"prompt_id": "a", "language": "da", "prompt": "Hvad er klokken?"},
    {"prompt_id": "b", "language": "da", "prompt": "Hvor bor du?"},
]


@pytest.fixture
def storage(tmp_path):
    return tmp_path / "croco_data"


# --------------------------------------------------------------------------------------------------
# Prompt files


BAD_PROMPT_FILES = [
    (
        "broken_json",
        _rows(GOOD_ROWS[0]) + '{"prompt_id": "b", "language": \n',
        ["PromptFileError", "prompts.jsonl, line 2: not valid JSON"],
    ),
    (
        "missing_column",
        _rows(GOOD_ROWS[0], {"prompt_id": "b", "language": "da", "text": "Hvor bor du?"}),
        ["PromptFileError", "line 2: missing prompt", "required columns: prompt_id, language, prompt"],
    ),
    ("empty_file", "", ["PromptFileError", "the prompt file is empty"]),
    (
        "duplicate_ids",
        _rows(*GOOD_ROWS, {"prompt_id": "a", "language": "da", "prompt": "Igen?"}),
        ["PromptFileError", "duplicate prompt ids", "a/da"],
    ),
]


@pytest.mark.parametrize("name, text, expected", BAD_PROMPT_FILES, ids=[case[0] for case in BAD_PROMPT_FILES])
def test_bad_prompt_file_fails_the_prompts_step_with_a_message_naming_the_problem(
    name, text, expected, tmp_path, storage, tiny_environ
):
    prompt_file = _prompt_file(tmp_path, text)
    environ = tiny_environ(storage, **TRANSFORMERS, CROCO_PROMPT_FILE=prompt_file)
    message = _failure(_materialize(environ, ["prompts"]))
    for part in expected:
        assert part in message, f"{name}: {part!r} not in\n{message}"
    assert _parquet_files(storage) == []


ENGLISH_ROWS = [
    {"prompt_id": "a", "language": "en", "prompt": "What time is it in Helsinki when it is noon in London?"},
    {"prompt_id": "b", "language": "en", "prompt": "Write a short poem about the first snow of winter."},
]


def test_a_language_with_no_prompts_and_no_usable_translation_fails_clearly(tmp_path, storage, tiny_environ):
    # Finnish has no shipped set; the tiny model's "translations" are not Finnish and are refused.
    prompt_file = _prompt_file(tmp_path, _rows(*ENGLISH_ROWS))
    environ = tiny_environ(storage, **TRANSFORMERS, CROCO_PROMPT_FILE=prompt_file)
    message = _failure(_materialize(environ, ["prompts"], language="fi"))
    assert "No usable prompts for 'fi'" in message
    assert "every machine translation" in message and "wrong_language" in message
    assert _parquet_files(storage) == []


def test_user_translations_win_over_machine_ones(tmp_path, storage, tiny_environ):
    finnish = {
        "prompt_id": "a",
        "language": "fi",
        "prompt": "Paljonko kello on Helsingissä, kun Lontoossa on keskipäivä?",
    }
    prompt_file = _prompt_file(tmp_path, _rows(*ENGLISH_ROWS, finnish))
    environ = tiny_environ(storage, **TRANSFORMERS, CROCO_PROMPT_FILE=prompt_file)
    result = _materialize(environ, ["prompts"], language="fi")
    assert result.success
    table = pl.read_parquet(storage / "prompts" / "language=fi" / "data.parquet")
    # "a" is the user's own translation; "b" was sent to the translator, whose answer was refused
    assert table.select("prompt_id", "prompt").rows() == [("a", finnish["prompt"])]
    metadata = result.asset_materializations_for_node("prompts")[0].metadata
    assert metadata["machine_translated"].value == 0
    assert metadata["translations_refused"].value == [{"reason": "wrong_language", "len": 1}]


def test_a_language_with_only_heldout_prompts_fails_generation_clearly(tmp_path, storage, tiny_environ):
    prompt_file = _prompt_file(tmp_path, _rows(*({**row, "split": "heldout"} for row in GOOD_ROWS)))
    environ = tiny_environ(storage, **TRANSFORMERS, CROCO_PROMPT_FILE=prompt_file)
    message = _failure(_materialize(environ, ["prompts", "generations"]))
    assert "no train prompts for language 'da'" in message
    assert "2 held-out" in message
    # the prompts table itself is valid and stays; nothing of generations is written
    assert _parquet_files(storage) == ["prompts/language=da/data.parquet"]


def test_a_policy_model_that_does_not_exist_is_named(tmp_path, storage, tiny_environ, monkeypatch):
    monkeypatch.chdir(tmp_path)
    environ = tiny_environ(storage, **TRANSFORMERS, CROCO_POLICY_MODEL="./nope")
    message = _failure(_materialize(environ, ["prompts", "generations"]))
    assert "ModelNotFoundError: Model path './nope' does not exist" in message
    assert _parquet_files(storage) == ["prompts/language=da/data.parquet"]  # no generations, no staged chunk


# --------------------------------------------------------------------------------------------------
# Configuration and storage


def test_an_unknown_config_key_is_named_by_dagster(storage, tiny_environ):
    environ = tiny_environ(storage, **TRANSFORMERS)
    run_config = _settings(chunk_promptz=1)
    with pytest.raises(DagsterInvalidConfigError) as raised:
        _materialize(environ, ["prompts"], run_config=run_config)
    assert 'unexpected config entry "chunk_promptz" at path root:resources:settings:config' in str(raised.value)
    assert _parquet_files(storage) == []


def test_run_config_naming_one_setting_keeps_the_profiles_other_settings(tiny_policy_path, tiny_reward_model_path):
    definitions = build_definitions(profile="tiny", environ={"CROCO_POLICY_MODEL": str(tiny_policy_path)})
    job = definitions.resolve_job_def("croco_job")
    resolved = validate_run_config(job, {"resources": {"settings": {"config": {"chunk_prompts": 1}}}})
    settings = resolved["resources"]["settings"]["config"]
    assert settings["chunk_prompts"] == 1
    assert (settings["profile"], settings["samples_per_prompt"], settings["max_new_tokens"]) == ("tiny", 3, 8)


def test_storage_below_a_regular_file_is_a_clear_error(tmp_path, tiny_environ):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file")
    storage = blocker / "croco_data"
    message = _failure(_materialize(tiny_environ(storage, **TRANSFORMERS), ["prompts"]))
    assert f"{blocker} is a file, not a folder" in message
    assert "CROCO_STORAGE" in message
    assert blocker.read_text() == "a regular file"
    assert [path.name for path in tmp_path.iterdir()] == [blocker.name]  # nothing written beside it


# --------------------------------------------------------------------------------------------------
# Non-finite rewards


@pytest.fixture(scope="module")
def nan_reward_model_path(tiny_reward_model_path, tmp_path_factory) -> Path:
    """The tiny reward model, except that the embedding of one token is NaN: any conversation that holds
    that token gets a NaN reward (attention spreads it to the last token), every other one is finite."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_reward_model_path)
    [poison] = tokenizer.encode(POISON_WORD, add_special_tokens=False)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward_model_path)
    with torch.no_grad():
        model.get_input_embeddings().weight[poison] = math.nan
    path = tmp_path_factory.mktemp("models") / "nan-reward-model"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _write_generations(storage: Path) -> pl.DataFrame:
    """A generations partition: prompt a has one poisoned answer (1 NaN), b none, c a poisoned prompt (all NaN)."""
    answers = {
        "a": ["the cat is good", "the zebra is good", "we sun water bread and the day"],
        "b": ["hus er en god dag", "le pain est bon", "de zon is water"],
        "c": ["the dog", "a house of bread", "je bon jour soleil et pain"],
    }
    prompts = {"a": "Tell me about cats.", "b": "Tell me about houses.", "c": "Tell me about the zebra."}
    rows = [
        {
            "prompt_id": pid,
            "language": "da",
            "sample_idx": idx,
            "prompt": prompts[pid],
            "response": text,
            "num_tokens": len(text.split()),
            "finish_reason": "stop",
            "model": "handmade",
            "config_hash": "x",
        }
        for pid, texts in answers.items()
        for idx, text in enumerate(texts)
    ]
    frame = pl.DataFrame(rows)
    path = storage / "generations" / "language=da" / "data.parquet"
    path.parent.mkdir(parents=True)
    frame.write_parquet(path)
    return frame


def test_nan_rewards_fail_pairing_with_the_rows_named(storage, tiny_environ, nan_reward_model_path):
    _write_generations(storage)
    environ = tiny_environ(storage, **TRANSFORMERS, CROCO_REWARD_MODEL=nan_reward_model_path)
    run_config = _settings(non_finite_rewards="fail")
    result = _materialize(environ, SCORE_AND_PAIR, run_config=run_config)
    message = _failure(result)
    assert "NonFiniteRewardError" in message
    assert "4 scored row(s) have a NaN, infinite or missing reward" in message
    for row in ["('a', 'da', 1)", "('c', 'da', 0)", "('c', 'da', 1)", "('c', 'da', 2)"]:
        assert row in message
    assert "non_finite_rewards" in message  # the setting to change, as the pipeline calls it
    # the scores were written (they are right: the model gave NaN); no pair table was
    scores = pl.read_parquet(storage / "reward_scores" / "language=da" / "data.parquet")
    assert scores.filter(pl.col("reward").is_nan()).select("prompt_id", "sample_idx").rows() == [
        ("a", 1),
        ("c", 0),
        ("c", 1),
        ("c", 2),
    ]
    assert _parquet_files(storage) == [
        "generations/language=da/data.parquet",
        "reward_scores/language=da/data.parquet",
    ]


def test_nan_rewards_dropped_and_counted_and_a_prompt_with_none_usable_is_unpaired(
    storage, tiny_environ, nan_reward_model_path
):
    _write_generations(storage)
    environ = tiny_environ(storage, **TRANSFORMERS, CROCO_REWARD_MODEL=nan_reward_model_path)
    run_config = _settings(non_finite_rewards="drop")
    result = _materialize(environ, SCORE_AND_PAIR, run_config=run_config)
    assert result.success
    pairs = pl.read_parquet(storage / "preference_pairs" / "language=da" / "data.parquet")
    assert pairs["prompt_id"].to_list() == ["a", "b"]
    assert pairs.filter(pl.col("prompt_id") == "a")["pool_size"].to_list() == [2]  # the NaN sample left out
    assert "zebra" not in " ".join(pairs["chosen"].to_list() + pairs["rejected"].to_list())
    unpaired = pl.read_parquet(storage / "unpaired_prompts" / "language=da" / "data.parquet")
    assert unpaired.select("prompt_id", "pool_size", "reason").rows() == [("c", 0, "non_finite_scores")]
    [materialization] = [
        m
        for m in result.asset_materializations_for_node("preference_pairs")
        if m.asset_key.to_user_string() == "preference_pairs"
    ]
    assert materialization.metadata["dropped_non_finite"].value == 4
    assert materialization.metadata["unpaired_by_reason"].value == {"non_finite_scores": 1}
