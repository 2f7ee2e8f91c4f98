"""Models that answer badly, run through Dagster with the tiny profile: a policy that often answers nothing,
a reward model that gives NaN for some rows, a judge that writes no verdict. Every such row stays in its
table and is counted in the step's metadata and in the evaluation table; none is dropped silently.
(NaN rewards through pairing, with the rows named or dropped and counted, are in tests/test_bad_input.py.)
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from croco_pipeline.definitions import ALL_ASSETS, build_definitions
from croco_pipeline.partitions import language_partitions

# whole runs of the asset graph: the system tier (make test), not make test-fast
pytestmark = pytest.mark.system

LANGUAGE = "da"
POISON_WORD = " bon"  # one of the tiny policy's words: the reward model scores NaN for any answer holding it
UP_TO_EVALUATION = [
    "prompts",
    "generations",
    "reward_scores",
    "preference_pairs",
    "unpaired_prompts",
    "sft_records",
    "dpo_checkpoint",
    "base_answers",
    "base_evaluation",
    "evaluation",
    "evaluation_judgments",
]


@pytest.fixture(scope="module")
def terse_policy_path(tiny_policy_path, tmp_path_factory) -> Path:
    """The tiny policy with end-of-sequence made likely at every step: about a third of its answers are empty."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_policy_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_policy_path)
    with torch.no_grad():
        model.lm_head.weight[tokenizer.eos_token_id] = 0.0
        model.lm_head.weight[tokenizer.eos_token_id, 0] = 1.8  # the dimension that is always positive
    path = tmp_path_factory.mktemp("models") / "terse-policy"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def poisoned_reward_model_path(tiny_reward_model_path, tmp_path_factory) -> Path:
    """The tiny reward model with one token's embedding NaN: an answer holding it gets a NaN reward."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_reward_model_path)
    [poison] = tokenizer.encode(POISON_WORD, add_special_tokens=False)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward_model_path)
    with torch.no_grad():
        model.get_input_embeddings().weight[poison] = math.nan
    path = tmp_path_factory.mktemp("models") / "poisoned-reward-model"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def degenerate_run(tmp_path_factory, tiny_environ, tiny_policy_path, terse_policy_path, poisoned_reward_model_path):
    storage = tmp_path_factory.mktemp("degenerate") / "croco_data"
    environ = tiny_environ(
        storage,
        CROCO_GENERATOR_BACKEND="transformers",
        CROCO_POLICY_MODEL=terse_policy_path,
        CROCO_REWARD_MODEL=poisoned_reward_model_path,
        CROCO_JUDGE_MODEL=tiny_policy_path,  # babbles words: never a [[1]]/[[2]]/[[T]] verdict
        CROCO_TRACKER="none",
    )
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(language_partitions.name, [LANGUAGE])
    result = materialize(
        ALL_ASSETS,
        selection=UP_TO_EVALUATION,
        partition_key=LANGUAGE,
        instance=instance,
        resources=build_definitions(environ=environ).resources,
        run_config={"resources": {"settings": {"config": {"judge": "llm"}}}},
        raise_on_error=False,
    )
    return storage, result


def _table(storage: Path, asset: str) -> pl.DataFrame:
    return pl.read_parquet(storage / asset / f"language={LANGUAGE}" / "data.parquet")


def _metadata(result, asset: str) -> dict:
    [materialization] = [
        m for m in result.asset_materializations_for_node(asset) if m.asset_key.to_user_string() == asset
    ]
    return {key: value.value for key, value in materialization.metadata.items()}


def _is_empty(column: pl.Expr) -> pl.Expr:
    return column.str.strip_chars() == ""


def test_the_run_finishes(degenerate_run):
    _, result = degenerate_run
    assert result.success


def test_empty_answers_are_kept_scored_and_counted(degenerate_run):
    storage, result = degenerate_run
    generations = _table(storage, "generations")
    # the tiny profile: 4 training prompts × 3 samples, every sample kept, empty or not
    assert generations["prompt_id"].n_unique() == 4 and generations.height == 4 * 3
    empty = generations.filter(_is_empty(pl.col("response"))).height
    assert 0 < empty < generations.height
    assert _metadata(result, "generations")["empty_responses"] == empty
    scores = _table(storage, "reward_scores")
    assert scores.height == generations.height
    assert _metadata(result, "reward_scores")["empty_responses"] == empty
    # an empty answer gets a real score, like any other
    assert scores.filter(_is_empty(pl.col("response")))["reward"].is_finite().all()
    pairs = _table(storage, "preference_pairs")
    with_empty = pairs.filter(_is_empty(pl.col("chosen")) | _is_empty(pl.col("rejected"))).height
    assert _metadata(result, "preference_pairs")["pairs_with_empty_answer"] == with_empty


def test_nan_rewards_stay_in_the_scores_and_are_counted_where_pairing_drops_them(degenerate_run):
    storage, result = degenerate_run
    scores = _table(storage, "reward_scores")
    nan_rows = scores.filter(~pl.col("reward").is_finite())
    assert 0 < nan_rows.height < scores.height
    assert nan_rows["response"].str.contains(POISON_WORD.strip()).all()
    assert _metadata(result, "reward_scores")["non_finite"] == nan_rows.height
    assert _metadata(result, "preference_pairs")["dropped_non_finite"] == nan_rows.height
    pairs = _table(storage, "preference_pairs")
    assert pairs["chosen_score"].is_finite().all() and pairs["rejected_score"].is_finite().all()
    # every prompt is either paired or listed as unpaired with its reason
    unpaired = _table(storage, "unpaired_prompts")
    assert sorted(pairs["prompt_id"].to_list() + unpaired["prompt_id"].to_list()) == sorted(
        scores["prompt_id"].unique().to_list()
    )


def test_a_judge_without_verdicts_is_counted_not_dropped(degenerate_run):
    storage, result = degenerate_run
    judgments = _table(storage, "evaluation_judgments")
    assert judgments.height == 2 * 2  # 2 held-out prompts × 2 samples, all kept
    assert judgments["verdict"].null_count() == judgments.height
    assert judgments["judge_text"].str.len_chars().min() > 0  # what the judge said is kept for a person to read
    [row] = _table(storage, "evaluation").to_dicts()
    assert row["n_unjudged"] == judgments.height and row["n_judged"] == 0
    assert row["win_rate"] is None
    metadata = _metadata(result, "evaluation")
    assert metadata["without_verdict"] == judgments.height and metadata["judged"] == 0
    assert math.isnan(metadata["win_rate"])
