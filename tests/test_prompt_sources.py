"""Prompt sources beyond the shipped demo set: Hugging Face datasets (a local folder here, no network),
conversation JSONL as the authors' scripts read it, English-only sources translated into every language,
and the authors' length filter."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from croco_pipeline.core.prompts.datasets import load_staged_prompts, prompt_dataset, staged_path
from croco_pipeline.core.prompts.sets import PromptFileError, load_prompt_file
from croco_pipeline.core.prompts.sources import (
    DEMO_PROMPTS_REFUSED,
    PromptSourceSettings,
    language_prompts,
    load_prompt_source,
)
from croco_pipeline.core.prompts.translation import conversations_over_limit


def conversation(question: str, answer: str = "An answer.") -> list[dict]:
    return [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "And a follow-up?"},
    ]


QUESTIONS = [f"  Question number {i}: how do plants grow?  " for i in range(5)]


@pytest.fixture()
def dataset_folder(tmp_path: Path) -> Path:
    """English conversations saved with Dataset.save_to_disk, as a DatasetDict with a train split."""
    import datasets

    rows = {"messages": [conversation(q) for q in QUESTIONS], "source_id": [f"s{i}" for i in range(5)]}
    folder = tmp_path / "english-conversations"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(folder))
    return folder


def test_a_dataset_folder_of_conversations_is_loaded_once_and_staged(
    tmp_path: Path, dataset_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = tmp_path / "storage"
    dataset = prompt_dataset(str(dataset_folder))
    frame = load_staged_prompts(str(storage), dataset)
    # the prompt is the first user turn; rows are numbered in their split; English by default
    assert frame["prompt"].to_list() == QUESTIONS
    assert frame["prompt_id"].to_list() == [f"{i:07d}" for i in range(5)]
    assert set(frame["language"]) == {"en"} and set(frame["split"]) == {"train"}
    # every message's text is kept for the length filter of translation
    assert frame["message_texts"][0].to_list() == [m["content"] for m in conversation(QUESTIONS[0])]
    assert Path(staged_path(str(storage), dataset)).is_file()
    # staged: later partitions read the Parquet file, the dataset is not loaded again
    from croco_pipeline.core.prompts import datasets as module

    monkeypatch.setattr(module, "_load_rows", lambda dataset: pytest.fail("the staged dataset was loaded again"))
    assert load_staged_prompts(str(storage), dataset).equals(frame)


def test_columns_map_onto_the_datasets_own_names(tmp_path: Path, dataset_folder: Path) -> None:
    dataset = prompt_dataset(str(dataset_folder), columns={"prompt_id": "source_id", "messages": "messages"})
    frame = load_staged_prompts(str(tmp_path / "storage"), dataset)
    assert frame["prompt_id"].to_list() == [f"s{i}" for i in range(5)]
    with pytest.raises(PromptFileError, match="maps answer, which croco does not read"):
        prompt_dataset(str(dataset_folder), columns={"answer": "x"})
    with pytest.raises(PromptFileError, match="no such split; the folder has train"):
        load_staged_prompts(str(tmp_path / "s2"), prompt_dataset(str(dataset_folder), split="test"))


def test_a_conversations_jsonl_file_as_the_authors_wrote_it(tmp_path: Path) -> None:
    path = tmp_path / "conversations.jsonl"
    path.write_text("".join(json.dumps({"messages": conversation(q)}) + "\n" for q in QUESTIONS[:3]))
    frame = load_staged_prompts(str(tmp_path / "storage"), prompt_dataset(str(path)))
    assert frame["prompt"].to_list() == QUESTIONS[:3]
    # an edited file is loaded anew, not read from the stale staged copy
    path.write_text("".join(json.dumps({"messages": conversation(q)}) + "\n" for q in QUESTIONS))
    assert load_staged_prompts(str(tmp_path / "storage"), prompt_dataset(str(path))).height == 5
    # croco's own prompt file takes conversations too: `messages` in place of `prompt`
    own = tmp_path / "own.jsonl"
    own.write_text(json.dumps({"prompt_id": "x", "language": "da", "messages": conversation("Hvad?")}) + "\n")
    assert load_prompt_file(str(own))["prompt"].to_list() == ["Hvad?"]


def test_bad_datasets_are_refused_with_the_reason(tmp_path: Path) -> None:
    def refused(name: str, *rows: dict) -> str:
        path = tmp_path / name
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        with pytest.raises(PromptFileError) as error:
            load_staged_prompts(str(tmp_path / "s"), prompt_dataset(str(path)))
        return str(error.value)

    assert "no 'prompt' or 'messages' column (it has instruction)" in refused("a.jsonl", {"instruction": "Hi"})
    assert "settings.prompt_dataset_columns" in refused("a2.jsonl", {"instruction": "Hi"})
    no_user = refused("b.jsonl", {"messages": [{"role": "system", "content": "x"}]})
    assert "b.jsonl, split train, row 0: the conversation has no user message" in no_user
    two = refused("c.jsonl", {"prompt": "Hi", "language": "en"}, {"prompt": "Hej", "language": "da"})
    assert "2 languages but no prompt_id column" in two
    with pytest.raises(PromptFileError, match=r"Cannot load prompt dataset .*\(CROCO_PROMPT_DATASET\)"):
        load_staged_prompts(str(tmp_path / "s"), prompt_dataset(str(tmp_path / "no-such-folder")))
    # the storage base holds no half-written staged file after a failure
    assert not list((tmp_path / "s").rglob("*.parquet"))


def test_an_english_only_source_is_translated_into_every_other_language(tmp_path: Path, dataset_folder: Path) -> None:
    settings = PromptSourceSettings(prompt_dataset=str(dataset_folder))
    source = load_prompt_source(settings, str(tmp_path / "storage"))
    english = language_prompts("en", source)
    assert english.own.height == 5 and english.to_translate.is_empty()
    for language in ("da", "fi", "cy"):  # with or without a shipped demo set: the source decides
        chosen = language_prompts(language, source)
        assert chosen.own is None and chosen.to_translate["prompt_id"].to_list() == source["prompt_id"].to_list()
        assert chosen.counts() == {"train": 5}
    # conversations too long to translate leave every language, English included
    dropped = language_prompts("en", source, too_long={"0000001", "0000003"})
    assert dropped.own["prompt_id"].to_list() == ["0000000", "0000002", "0000004"] and dropped.dropped_too_long == 2
    assert language_prompts("da", source, too_long={"0000001"}).to_translate.height == 4


def test_translations_in_the_source_win_and_only_the_rest_is_translated(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    rows = [{"prompt_id": str(i), "language": "en", "prompt": f"Q{i}"} for i in range(4)]
    rows.append({"prompt_id": "1", "language": "da", "prompt": "Spørgsmål 1"})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    source = load_prompt_source(PromptSourceSettings(prompt_file=str(path)), str(tmp_path))
    danish = language_prompts("da", source)
    assert danish.own["prompt"].to_list() == ["Spørgsmål 1"]
    assert danish.to_translate["prompt_id"].to_list() == ["0", "2", "3"]


def test_the_demo_prompts_are_refused_where_the_profile_says_so(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError) as error:
        load_prompt_source(PromptSourceSettings(allow_demo_prompts=False), str(tmp_path))
    assert str(error.value) == DEMO_PROMPTS_REFUSED
    assert "settings.prompt_dataset (CROCO_PROMPT_DATASET)" in DEMO_PROMPTS_REFUSED
    # allowed (the laptop profile): the shipped sets, complete, nothing to translate
    assert load_prompt_source(PromptSourceSettings(), str(tmp_path)) is None
    shipped = language_prompts("da", None)
    assert shipped.own.height == 64 and shipped.to_translate.is_empty()
    assert language_prompts("fi", None).to_translate.height == 64  # no shipped Finnish: translated
    with pytest.raises(PromptFileError, match="choose one prompt source"):
        load_prompt_source(PromptSourceSettings(prompt_file="a.jsonl", prompt_dataset="b"), str(tmp_path))


def test_the_length_filter_measures_every_message_as_the_translator_sees_it(tiny_policy_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_policy_path))
    long_answer = " ".join(["word"] * 400)
    english = pl.DataFrame(
        {
            "prompt_id": ["short", "long-answer", "long-question"],
            "prompt": ["Hi?", "Hi?", " ".join(["why"] * 400)],
            "message_texts": [["Hi?", "Hello."], ["Hi?", long_answer], [" ".join(["why"] * 400)]],
        }
    )
    over = conversations_over_limit(english, tokenizer, "translategemma_vllm", max_input_tokens=200)
    # an assistant turn too long to translate drops the whole conversation, as the authors did
    assert over == {"long-answer", "long-question"}
    assert conversations_over_limit(english, tokenizer, "translategemma_vllm", max_input_tokens=10_000) == set()
    # without whole conversations, the prompt alone is measured
    assert conversations_over_limit(english.drop("message_texts"), tokenizer, "completion", 200) == {"long-question"}
