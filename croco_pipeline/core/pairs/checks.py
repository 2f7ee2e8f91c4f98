"""Data-quality checks on a table of preference pairs (pure functions; the assets report them in the UI).

Each check returns a ``CheckOutcome``. ``blocking`` checks mean corrupt data: when one fails, training
on those pairs must not start. The language-share check only warns: an off-language chosen answer is a
signal about the policy or the reward model, not a broken table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from croco_pipeline.core.languages.identify import detect


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    blocking: bool
    description: str
    metadata: dict = field(default_factory=dict)


def _examples(frame: pl.DataFrame) -> list[str]:
    return [
        f"{row['prompt_id']}/{row['language']}" for row in frame.select("prompt_id", "language").head(5).to_dicts()
    ]


def check_pairs(
    pairs: pl.DataFrame, *, in_language: bool, language: str | None = None, min_chosen_language_share: float = 0.5
) -> list[CheckOutcome]:
    """All checks of one pair table. ``language`` enables the target-language share check."""
    outcomes = []

    not_better = pairs.filter(~(pl.col("chosen_score") > pl.col("rejected_score")))
    outcomes.append(
        CheckOutcome(
            "chosen_beats_rejected",
            not_better.is_empty(),
            True,
            "every chosen_score is strictly greater than its rejected_score",
            {"violations": not_better.height, "examples": _examples(not_better)},
        )
    )

    same_sample = pairs.filter(
        (pl.col("chosen_language") == pl.col("rejected_language"))
        & (pl.col("chosen_sample_idx") == pl.col("rejected_sample_idx"))
    )
    outcomes.append(
        CheckOutcome(
            "chosen_differs_from_rejected",
            same_sample.is_empty(),
            True,
            "chosen and rejected are different samples",
            {"violations": same_sample.height, "examples": _examples(same_sample)},
        )
    )

    non_finite = pairs.filter(~(pl.col("chosen_score").is_finite() & pl.col("rejected_score").is_finite()))
    outcomes.append(
        CheckOutcome(
            "finite_scores",
            non_finite.is_empty(),
            True,
            "no NaN or infinite score in any pair",
            {"violations": non_finite.height, "examples": _examples(non_finite)},
        )
    )

    if in_language:
        duplicated = pairs.filter(pl.struct("prompt_id", "language").is_duplicated())
        outcomes.append(
            CheckOutcome(
                "one_pair_per_prompt",
                duplicated.is_empty(),
                True,
                "no duplicate (prompt_id, language) pair",
                {"violations": duplicated.height, "examples": _examples(duplicated)},
            )
        )

    if language is not None:
        # no pairs at all: nothing chosen is in the language (a warning; the training preflight stops the run)
        share = chosen_language_share(pairs, language)
        outcomes.append(
            CheckOutcome(
                "chosen_in_target_language",
                share >= min_chosen_language_share,
                False,
                f"at least {min_chosen_language_share:.0%} of chosen answers are in {language}",
                {"share": share, "floor": min_chosen_language_share, "pairs": pairs.height},
            )
        )
    return outcomes


def chosen_language_share(pairs: pl.DataFrame, language: str) -> float:
    """The share of pairs whose chosen answer the reward's identifier finds in ``language`` (0 without pairs).
    Low, the pairs were decided by the scorer's other terms, and DPO learns those rather than the language."""
    if not pairs.height:
        return 0.0
    return sum(detect(text)[0] == language for text in pairs["chosen"]) / pairs.height
