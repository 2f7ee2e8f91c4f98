"""How well does a reward model rank answers within each language? (docs/design.md §1.6)

CroCo relies on an English-trained reward model giving useful *within-language* rankings in other
languages. This module measures that on shipped pairs of answers to the same prompt where one is
clearly better (``croco_pipeline/data/rm_transfer/{lang}.jsonl``). Each pair has a ``kind`` saying how
the worse answer fails:

* ``wrong`` - same language, factually wrong;
* ``off_language`` - right content, but in another language than the prompt;
* ``degenerate`` - a looping or broken answer.

Pairwise accuracy = share of pairs where score(better) > score(worse); equal scores count 0.5. Pairs the
scorer could not score (skipped as too long, or a non-finite score) are excluded and counted. Each
accuracy comes with a Wilson interval (ties enter as half successes).
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from croco_pipeline.core.evaluation.multiple_choice import wilson_interval
from croco_pipeline.core.io import shipped_data as shipped
from croco_pipeline.core.languages.codes import get_language
from croco_pipeline.core.models.reward_scorers import RewardScorer

PAIR_KINDS = ("wrong", "off_language", "degenerate")
PAIR_FIELDS = ("pair_id", "question_id", "kind", "prompt", "better", "worse")
ALL_KINDS = "all"


class TransferDataError(ValueError):
    """A transfer-pair file that cannot be used; the message names the file, the line and the fix."""


def transfer_languages() -> list[str]:
    """Languages with a shipped set of transfer pairs."""
    return shipped.shipped_languages("rm_transfer")


def load_transfer_pairs(language: str, path: str | Path | None = None) -> pl.DataFrame:
    """The (better, worse) answer pairs of one language, validated; the shipped set unless ``path``.

    Columns: pair_id, question_id, language, kind, prompt, better, worse.
    """
    get_language(language)
    text, source = shipped.shipped_or_file_text(
        "rm_transfer", language, path, TransferDataError, what="transfer pairs", file_label="Transfer-pair"
    )

    rows: list[dict] = []
    seen: set[str] = set()
    for line_number, row in shipped.parse_jsonl(text, source, TransferDataError):
        where = f"{source}, line {line_number}"
        bad = [field for field in PAIR_FIELDS if not isinstance(row.get(field), str) or not row[field].strip()]
        if bad:
            raise TransferDataError(f"{where}: {', '.join(bad)} must be non-empty text.")
        if row["kind"] not in PAIR_KINDS:
            raise TransferDataError(f"{where}: kind must be one of {', '.join(PAIR_KINDS)}, got {row['kind']!r}.")
        if row["pair_id"] in seen:
            raise TransferDataError(f"{where}: duplicate pair_id {row['pair_id']!r}.")
        if row["better"] == row["worse"]:
            raise TransferDataError(f"{where}: better and worse are the same text.")
        seen.add(row["pair_id"])
        rows.append({field: row[field] for field in PAIR_FIELDS} | {"language": language})
    if not rows:
        raise TransferDataError(f"{source}: no pairs.")
    columns = ["pair_id", "question_id", "language", "kind", "prompt", "better", "worse"]
    return pl.DataFrame(rows, schema={column: pl.String for column in columns}).select(columns)


def score_transfer_pairs(scorer: RewardScorer, pairs: pl.DataFrame) -> pl.DataFrame:
    """``pairs`` with the scorer's better_score and worse_score and the pair's ``outcome``:
    1.0 ranked right, 0.5 tie, 0.0 ranked wrong, null when it could not be compared."""
    missing = [c for c in ("language", "kind", "prompt", "better", "worse") if c not in pairs.columns]
    if missing:
        raise ValueError(f"pairs lack column(s) {missing}; load them with load_transfer_pairs()")
    n = pairs.height
    if n == 0:
        raise ValueError("no pairs to score")
    prompts, languages = pairs["prompt"].to_list(), pairs["language"].to_list()
    batch = scorer.score(prompts * 2, pairs["better"].to_list() + pairs["worse"].to_list(), languages * 2)
    better, worse = batch.scores[:n], batch.scores[n:]
    outcomes: list[float | None] = []
    for i in range(n):
        comparable = (
            not batch.skipped[i] and not batch.skipped[n + i] and math.isfinite(better[i]) and math.isfinite(worse[i])
        )
        if not comparable:
            outcomes.append(None)
        else:
            outcomes.append(1.0 if better[i] > worse[i] else 0.0 if better[i] < worse[i] else 0.5)
    return pairs.with_columns(
        pl.Series("better_score", better, dtype=pl.Float64),
        pl.Series("worse_score", worse, dtype=pl.Float64),
        pl.Series("outcome", outcomes, dtype=pl.Float64),
    )


def empty_accuracy_table() -> pl.DataFrame:
    """The accuracy table of a language with no transfer pairs: no rows, the columns of :func:`accuracy_table`."""
    return accuracy_table(pl.DataFrame(schema={"language": pl.String, "kind": pl.String, "outcome": pl.Float64}))


def accuracy_table(scored: pl.DataFrame, confidence: float = 0.95) -> pl.DataFrame:
    """Pairwise accuracy per (language, kind) plus an ``"all"`` kind per language, from
    :func:`score_transfer_pairs` output. Columns: language, kind, n, n_scored, n_unscored, ties,
    accuracy, ci_low, ci_high (accuracy and the interval null when nothing could be scored)."""
    rows = []
    for language in sorted(scored["language"].unique().to_list()):
        in_language = scored.filter(pl.col("language") == language)
        kinds = [kind for kind in PAIR_KINDS if kind in set(in_language["kind"].to_list())]
        for kind, part in [(k, in_language.filter(pl.col("kind") == k)) for k in kinds] + [(ALL_KINDS, in_language)]:
            outcomes = part["outcome"].drop_nulls().to_list()
            row = {
                "language": language,
                "kind": kind,
                "n": part.height,
                "n_scored": len(outcomes),
                "n_unscored": part.height - len(outcomes),
                "ties": sum(o == 0.5 for o in outcomes),
                "accuracy": None,
                "ci_low": None,
                "ci_high": None,
            }
            if outcomes:
                successes = float(sum(outcomes))
                row["accuracy"] = successes / len(outcomes)
                row["ci_low"], row["ci_high"] = wilson_interval(successes, len(outcomes), confidence)
            rows.append(row)
    return pl.DataFrame(
        rows,
        schema={
            "language": pl.String,
            "kind": pl.String,
            "n": pl.Int64,
            "n_scored": pl.Int64,
            "n_unscored": pl.Int64,
            "ties": pl.Int64,
            "accuracy": pl.Float64,
            "ci_low": pl.Float64,
            "ci_high": pl.Float64,
        },
    )


def pairwise_accuracy(scorer: RewardScorer, pairs: pl.DataFrame, confidence: float = 0.95) -> pl.DataFrame:
    """Score ``pairs`` with ``scorer`` and return the accuracy table (see :func:`accuracy_table`)."""
    return accuracy_table(score_transfer_pairs(scorer, pairs), confidence)
