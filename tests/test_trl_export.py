"""Pair tables exported in TRL's conversational preference format."""

from __future__ import annotations

import datasets
import polars as pl
import pytest
from trl.data_utils import is_conversational

from croco_pipeline.core.pairs.rule import PairingConfig, build_pairs
from croco_pipeline.core.pairs.trl_export import export_pairs, to_trl_conversational


@pytest.fixture
def pairs() -> pl.DataFrame:
    rewards = {("p1", "da"): [1.0, 3.0, 2.0], ("p1", "nl"): [0.0, 5.0], ("p2", "da"): [4.0, -1.0]}
    scored = pl.DataFrame(
        [
            {
                "prompt_id": pid,
                "language": lang,
                "sample_idx": idx,
                "prompt": f"Question {pid} ({lang})",
                "response": f"Answer {pid}/{lang}/{idx}",
                "reward": reward,
            }
            for (pid, lang), values in rewards.items()
            for idx, reward in enumerate(values)
        ]
    )
    return build_pairs(scored, PairingConfig(target="min")).pairs


def assert_trl_shape(example: dict, pair: dict) -> None:
    assert is_conversational(example)
    assert example["prompt"] == [{"role": "user", "content": pair["prompt"]}]
    assert example["chosen"] == [{"role": "assistant", "content": pair["chosen"]}]
    assert example["rejected"] == [{"role": "assistant", "content": pair["rejected"]}]
    assert (example["prompt_id"], example["chosen_score"], example["rejected_score"]) == (
        pair["prompt_id"],
        pair["chosen_score"],
        pair["rejected_score"],
    )


def test_dataset_has_the_conversational_preference_shape(pairs):
    dataset = to_trl_conversational(pairs)
    assert dataset.num_rows == 3
    assert dataset.column_names[:3] == ["prompt", "chosen", "rejected"]
    message = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})
    assert dataset.features["prompt"] == message and dataset.features["chosen"] == message
    for example, pair in zip(dataset, pairs.iter_rows(named=True)):
        assert_trl_shape(example, pair)
    assert dataset[0]["chosen"][0]["content"] == "Answer p1/da/1"


def test_jsonl_export_loads_with_datasets(pairs, tmp_path):
    out = export_pairs(pairs, tmp_path / "dpo" / "pairs.jsonl")
    loaded = datasets.load_dataset("json", data_files=str(out), split="train")
    assert loaded.num_rows == 3
    for example, pair in zip(loaded, pairs.iter_rows(named=True)):
        assert_trl_shape(example, pair)


def test_hf_export_replaces_an_older_one(pairs, tmp_path):
    out = tmp_path / "dpo_dataset"
    export_pairs(pairs.head(1), out, format="hf")
    export_pairs(pairs, out, format="hf")
    loaded = datasets.load_from_disk(str(out))
    assert loaded.num_rows == 3
    assert_trl_shape(loaded[2], pairs.row(2, named=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dpo_dataset"]  # nothing staged left over


def test_bad_input_is_refused(pairs, tmp_path):
    with pytest.raises(ValueError, match=r"missing column\(s\) rejected; columns found: prompt_id, prompt"):
        to_trl_conversational(pairs.select("prompt_id", "prompt", "chosen"))
    no_rejected = pairs.with_columns(rejected=pl.when(pl.col("prompt_id") == "p2").then(None).otherwise("rejected"))
    with pytest.raises(ValueError, match=r"1 pair\(s\) lack a prompt, chosen or rejected text \(first at row 2,"):
        to_trl_conversational(no_rejected)
    with pytest.raises(ValueError, match="needs a .jsonl file name"):
        export_pairs(pairs, tmp_path / "pairs.parquet")
    with pytest.raises(ValueError, match="not one of jsonl, hf"):
        export_pairs(pairs, tmp_path / "x", format="csv")  # type: ignore[arg-type]
