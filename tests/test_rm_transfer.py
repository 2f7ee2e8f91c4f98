"""Reward-model ranking quality per language, measured with the language-fidelity demo scorer.

Figures measured with that scorer on the shipped pairs (12 pairs per kind and language):
off_language 12/12 in all 11 languages; degenerate 8/12 (da, fr) to 11/12 (en, gl); wrong 4/12 to 7/12,
about chance, as expected from a scorer that knows languages but not facts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest

from croco_pipeline.core.evaluation.reward_transfer import (
    PAIR_KINDS,
    TransferDataError,
    accuracy_table,
    load_transfer_pairs,
    pairwise_accuracy,
    score_transfer_pairs,
    transfer_languages,
)
from croco_pipeline.core.models.reward_scorers import RewardScorer, ScoreBatch, open_reward_scorer

PAPER_LANGUAGES = {"en", "da", "nl", "fr", "de", "it", "es", "gl", "ga", "mt", "cy"}


def test_shipped_pairs_cover_the_paper_languages() -> None:
    assert PAPER_LANGUAGES <= set(transfer_languages())
    for language in PAPER_LANGUAGES:
        pairs = load_transfer_pairs(language)
        assert pairs.columns == ["pair_id", "question_id", "language", "kind", "prompt", "better", "worse"]
        assert set(pairs["kind"]) == set(PAIR_KINDS), language
        assert pairs["pair_id"].is_unique().all()


@pytest.fixture(scope="module")
def fidelity_table() -> pl.DataFrame:
    pairs = pl.concat([load_transfer_pairs(language) for language in sorted(PAPER_LANGUAGES)])
    return pairwise_accuracy(open_reward_scorer("language_fidelity"), pairs)


def test_fidelity_scorer_ranks_off_language_answers_last_in_every_language(fidelity_table: pl.DataFrame) -> None:
    off = fidelity_table.filter(pl.col("kind") == "off_language")
    assert set(off["language"]) == PAPER_LANGUAGES
    assert off["n_unscored"].sum() == 0
    for row in off.iter_rows(named=True):
        assert row["accuracy"] >= 0.9, row
        assert row["ci_low"] > 0.5, row  # better than a coin, with 95 % confidence


def test_accuracy_table_shape_and_consistency(fidelity_table: pl.DataFrame) -> None:
    assert fidelity_table.columns == [
        "language",
        "kind",
        "n",
        "n_scored",
        "n_unscored",
        "ties",
        "accuracy",
        "ci_low",
        "ci_high",
    ]
    assert fidelity_table.height == len(PAPER_LANGUAGES) * (len(PAIR_KINDS) + 1)
    for language in PAPER_LANGUAGES:
        part = fidelity_table.filter(pl.col("language") == language)
        kinds = part.filter(pl.col("kind") != "all")
        overall = part.filter(pl.col("kind") == "all").row(0, named=True)
        assert overall["n"] == kinds["n"].sum()
        weighted = (kinds["accuracy"] * kinds["n_scored"]).sum() / kinds["n_scored"].sum()
        assert overall["accuracy"] == pytest.approx(weighted)
    assert (fidelity_table["ci_low"] <= fidelity_table["accuracy"]).all()
    assert (fidelity_table["accuracy"] <= fidelity_table["ci_high"]).all()
    # the demo scorer knows nothing about facts: "wrong" pairs are not reliably ranked
    wrong = fidelity_table.filter(pl.col("kind") == "wrong")
    assert wrong["accuracy"].mean() < 0.75


class LengthScorer(RewardScorer):
    """A transparent rule (longer answer = higher score) that skips answers mentioning "SKIP"."""

    name = "length"

    def score(self, prompts, responses, languages, finish_reasons=None) -> ScoreBatch:
        skipped = ["SKIP" in r for r in responses]
        scores = [math.nan if s else float(len(r)) for r, s in zip(responses, skipped)]
        return ScoreBatch(scores=scores, truncated=[False] * len(responses), skipped=skipped)


def test_ties_count_half_and_unscored_pairs_are_counted() -> None:
    pairs = pl.DataFrame(
        {
            "pair_id": ["a", "b", "c", "d"],
            "question_id": ["q"] * 4,
            "language": ["en"] * 4,
            "kind": ["wrong", "wrong", "wrong", "degenerate"],
            "prompt": ["p"] * 4,
            "better": ["long answer", "same", "short", "SKIP this"],
            "worse": ["tiny", "same", "much longer answer", "x"],
        }
    )
    scored = score_transfer_pairs(LengthScorer(), pairs)
    assert scored["outcome"].to_list() == [1.0, 0.5, 0.0, None]
    rows = {row["kind"]: row for row in accuracy_table(scored).to_dicts()}
    assert rows["wrong"]["accuracy"] == pytest.approx(0.5) and rows["wrong"]["ties"] == 1
    assert rows["degenerate"]["n_unscored"] == 1 and rows["degenerate"]["accuracy"] is None
    assert rows["all"]["n"] == 4 and rows["all"]["n_scored"] == 3


def test_invalid_pair_files(tmp_path: Path) -> None:
    good = {"pair_id": "a", "question_id": "q", "kind": "wrong", "prompt": "p", "better": "b", "worse": "w"}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "pair_id": "b", "kind": "rude"}), encoding="utf-8")
    with pytest.raises(TransferDataError, match="line 2: kind must be one of wrong, off_language, degenerate"):
        load_transfer_pairs("en", path)
    path.write_text(json.dumps({**good, "worse": ""}), encoding="utf-8")
    with pytest.raises(TransferDataError, match="line 1: worse must be non-empty text"):
        load_transfer_pairs("en", path)
    path.write_text(json.dumps(good) + "\n" + json.dumps(good), encoding="utf-8")
    with pytest.raises(TransferDataError, match="duplicate pair_id 'a'"):
        load_transfer_pairs("en", path)
