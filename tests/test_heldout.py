"""Held-out prompts: the shipped split, files in the m-ArenaHard format, and m-ArenaHard itself offline."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from croco_pipeline.core.evaluation.heldout import (
    ARENA_DATASET,
    ARENA_LANGUAGES,
    ArenaUnavailableError,
    HeldoutError,
    arena_sample_path,
    load_arena_file,
    load_arena_hard,
    load_heldout_prompts,
    shipped_heldout_prompts,
)
from croco_pipeline.core.prompts.sets import PROMPT_COLUMNS


def test_shipped_heldout_split() -> None:
    prompts = shipped_heldout_prompts("da")
    assert prompts.columns == PROMPT_COLUMNS
    assert prompts.height == 16
    assert prompts["split"].unique().to_list() == ["heldout"]
    assert prompts["language"].unique().to_list() == ["da"]


@pytest.mark.parametrize("language", ["en", "da", "fr"])
def test_shipped_arena_sample_reads_as_heldout_prompts(language: str) -> None:
    prompts = load_arena_file(arena_sample_path(language), language)
    assert prompts.columns == PROMPT_COLUMNS
    assert prompts["prompt_id"].to_list() == ["sample-a01", "sample-a02", "sample-a03"]
    assert prompts["split"].unique().to_list() == ["heldout"]
    assert prompts["language"].unique().to_list() == [language]
    assert all(len(text) > 80 for text in prompts["prompt"])


def test_arena_sample_has_the_dataset_columns() -> None:
    for line in arena_sample_path("da").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        assert set(row) == {"question_id", "category", "subcategory", "prompt", "language"}
        assert row["category"] in ("hard_prompt", "creative_writing")


def test_a_multilingual_file_is_filtered_by_code_or_name(tmp_path: Path) -> None:
    rows = [
        {
            "question_id": "x1",
            "category": "hard_prompt",
            "subcategory": "",
            "prompt": "Hej med dig",
            "language": "Danish",
        },
        {"question_id": "x1", "category": "hard_prompt", "subcategory": "", "prompt": "Hello there", "language": "en"},
        {"question_id": "x2", "category": "hard_prompt", "subcategory": "", "prompt": "Farvel", "language": "da"},
    ]
    path = tmp_path / "arena.parquet"
    pl.DataFrame(rows).write_parquet(path)
    danish = load_arena_file(path, "da")
    assert danish["prompt"].to_list() == ["Hej med dig", "Farvel"]
    assert danish["source"].unique().to_list() == [str(path)]
    assert load_arena_file(path, "da", limit=1).height == 1
    with pytest.raises(HeldoutError, match="no prompts in language 'fr'"):
        load_arena_file(path, "fr")


def test_bad_files_say_what_is_wrong(tmp_path: Path) -> None:
    missing = tmp_path / "missing-column.jsonl"
    missing.write_text(json.dumps({"question_id": "a", "text": "hi"}) + "\n", encoding="utf-8")
    with pytest.raises(HeldoutError, match="missing column\\(s\\) prompt"):
        load_arena_file(missing, "en")
    duplicated = tmp_path / "dup.jsonl"
    duplicated.write_text(
        "\n".join(json.dumps({"question_id": "a", "prompt": "hi"}) for _ in range(2)), encoding="utf-8"
    )
    with pytest.raises(HeldoutError, match="duplicate question_id 'a'"):
        load_arena_file(duplicated, "en")
    with pytest.raises(HeldoutError, match="not found"):
        load_arena_file(tmp_path / "nope.jsonl", "en")
    with pytest.raises(HeldoutError, match="Unknown held-out source 'arena-hard'"):
        load_heldout_prompts("en", "arena-hard")


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hugging Face offline mode, so the real loading code fails at once instead of retrying DNS."""
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_arena_hard_unreachable_raises_a_clear_error(offline_hub: None) -> None:
    with pytest.raises(ArenaUnavailableError) as info:
        load_arena_hard("da")
    message = str(info.value)
    assert ARENA_DATASET in message and "'da'" in message and "shipped" in message


def test_auto_falls_back_to_the_shipped_prompts_with_a_note(offline_hub: None) -> None:
    heldout = load_heldout_prompts("fr", "auto", limit=5)
    assert heldout.source == "shipped"
    assert heldout.prompts.height == 5 and heldout.prompts["language"].unique().to_list() == ["fr"]
    assert heldout.note is not None
    assert (
        "could not be loaded" in heldout.note and "Falling back to the held-out split of the prompts" in heldout.note
    )
    with pytest.raises(ArenaUnavailableError):
        load_heldout_prompts("fr", "arena")


def test_sources_shipped_and_path() -> None:
    shipped = load_heldout_prompts("en")
    assert shipped.source == "shipped" and shipped.note is None and shipped.prompts.height == 16
    from_file = load_heldout_prompts("en", str(arena_sample_path("en")))
    assert from_file.prompts.height == 3 and from_file.source.endswith("en.jsonl")


def test_paper_languages_all_have_a_config() -> None:
    assert set(ARENA_LANGUAGES) == {"en", "it", "es", "fr", "de", "nl", "da", "gl", "cy", "mt", "ga"}
    with pytest.raises(ArenaUnavailableError, match="no 'sv' config"):
        load_arena_hard("sv")


def test_the_held_out_split_comes_from_the_languages_prompt_table() -> None:
    """A language without a shipped set (its prompts machine-translated) is evaluated on its own held-out split."""
    table = pl.DataFrame(
        {
            "prompt_id": ["b", "a", "c"],
            "language": ["pl"] * 3,
            "split": ["heldout", "heldout", "train"],
            "prompt": ["Pytanie b?", "Pytanie a?", "Pytanie c?"],
            "source": ["machine-translated by m"] * 3,
        }
    )
    heldout = load_heldout_prompts("pl", "shipped", prompts=table)
    assert heldout.prompts["prompt_id"].to_list() == ["a", "b"] and heldout.source == "shipped"
    with pytest.raises(HeldoutError, match="no held-out split .* settings.heldout_source"):
        load_heldout_prompts("pl", "shipped", prompts=table.filter(pl.col("split") == "train"))
