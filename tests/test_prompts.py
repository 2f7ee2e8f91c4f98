"""Prompt sets: the shipped default set is complete, and bad prompt files fail with a clear message."""

import json

import polars as pl
import pytest

from croco_pipeline.core.languages.codes import PAPER_HIGH_RESOURCE, PAPER_LOW_RESOURCE
from croco_pipeline.core.prompts.sets import (
    PromptFileError,
    english_prompts,
    format_user_prompt,
    load_prompt_file,
    load_shipped_prompts,
    own_prompts,
    shipped_languages,
)

TRAINING_LANGUAGES = PAPER_HIGH_RESOURCE + PAPER_LOW_RESOURCE


def test_shipped_set_covers_the_paper_languages_with_shared_ids():
    assert set(TRAINING_LANGUAGES) <= set(shipped_languages())
    english = load_shipped_prompts("en")
    assert english.filter(pl.col("split") == "train").height >= 48
    assert english.filter(pl.col("split") == "heldout").height >= 16
    for language in TRAINING_LANGUAGES:
        frame = load_shipped_prompts(language)
        assert frame["language"].unique().to_list() == [language]
        # every translation keeps the English prompt's id and split
        assert (
            frame.select("prompt_id", "split")
            .sort("prompt_id")
            .equals(english.select("prompt_id", "split").sort("prompt_id"))
        ), language
        assert frame["prompt"].str.strip_chars().str.len_chars().min() > 10
        if language != "en":
            assert not frame["prompt"].is_in(english["prompt"].implode()).any(), f"{language} has untranslated prompts"


def test_a_user_file_replaces_the_shipped_sets_in_every_format(tmp_path):
    rows = [
        {"prompt_id": "a", "language": "da", "prompt": "Hvad er klokken?", "split": "train"},
        {"prompt_id": "b", "language": "da", "prompt": "Skriv et digt.", "split": "heldout"},
        {"prompt_id": "a", "language": "fr", "prompt": "Quelle heure est-il ?"},
    ]
    frame = pl.DataFrame(rows)
    paths = {
        "jsonl": tmp_path / "p.jsonl",
        "csv": tmp_path / "p.csv",
        "parquet": tmp_path / "p.parquet",
    }
    paths["jsonl"].write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    frame.write_csv(paths["csv"])
    frame.write_parquet(paths["parquet"])
    for path in paths.values():
        user_file = load_prompt_file(str(path))
        danish = own_prompts("da", user_file)
        assert danish["prompt_id"].to_list() == ["a", "b"]
        assert danish["split"].to_list() == ["train", "heldout"]
        assert danish["source"][0] == str(path)
        assert own_prompts("fr", user_file)["split"].to_list() == ["train"]  # split defaults to train
        # not in the file: to be machine-translated from the file's English (the shipped sets are not mixed in)
        assert own_prompts("de", user_file) is None
        assert english_prompts(user_file).height == 0  # the file has no English rows
    # without a file: the shipped set, and nothing for a language without one
    assert own_prompts("de", None)["source"][0] == "shipped"
    assert own_prompts("fi", None) is None and english_prompts(None).height == 64


@pytest.mark.parametrize(
    "content, message",
    [
        (
            '{"prompt_id": "a", "language": "da", "prompt": "x"}\n{"prompt_id": "b", "language": "da", "prompt": \n',
            "line 2: not valid JSON",
        ),
        ('{"prompt_id": "a", "language": "da"}\n', "line 1: missing prompt"),
        ('{"prompt_id": "a", "language": "xx", "prompt": "hi"}\n', "Unknown language code 'xx'"),
        ('{"prompt_id": "a", "language": "Danish", "prompt": "hi"}\n', "not an ISO 639-1 language code"),
        ("\n\n", "the prompt file is empty"),
        (
            '{"prompt_id": "a", "language": "da", "prompt": "x"}\n'
            '{"prompt_id": "a", "language": "da", "prompt": "y"}\n',
            "duplicate prompt ids within a language (a/da)",
        ),
        ('{"prompt_id": "a", "language": "da", "prompt": "x", "split": "test"}\n', "split must be one of"),
    ],
)
def test_bad_prompt_files_are_refused_with_file_and_line(tmp_path, content, message):
    path = tmp_path / "prompts.jsonl"
    path.write_text(content)
    with pytest.raises(PromptFileError) as error:
        load_prompt_file(str(path))
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_missing_file_unsupported_type_and_language_without_prompts(tmp_path):
    with pytest.raises(PromptFileError, match="Prompt file not found"):
        load_prompt_file(str(tmp_path / "nope.jsonl"))
    with pytest.raises(PromptFileError, match="unsupported prompt file type '.txt'"):
        load_prompt_file(str(tmp_path / "prompts.txt"))
    with pytest.raises(PromptFileError, match="has no 'fi' prompts"):
        load_shipped_prompts("fi")


def test_respond_in_language_suffix_names_the_language():
    assert format_user_prompt("Hej", "da", respond_in_language=False) == "Hej"
    assert format_user_prompt("Dia duit", "ga", respond_in_language=True) == (
        "Dia duit Please respond in Irish and nothing else."
    )
