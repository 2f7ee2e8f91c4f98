"""Forgetting, measured so that a 5-point drop can be seen on a few dozen questions.

Accuracy on 48 four-way questions has a 95 % interval of about ±12 points: a 5-point loss hides in it. The
same questions answered by the base and the tuned model are paired, though, and what a model puts on the
correct choice moves much less between two close models than accuracy's 0/1 does. Per question:

    p = softmax over the four choices' scores (the scores the accuracy compares), taken at the correct one
    Δ = p(tuned) − p(base)

The mean Δ in points (× 100) comes with a Student-t interval; the tuned model "did not forget" when the
whole interval lies above −5 points (a non-inferiority margin of 5 points, the old accuracy criterion's).
"""

from __future__ import annotations

import math
from statistics import fmean, stdev

import polars as pl
from scipy import stats

FORGETTING_MARGIN_POINTS = 5.0


def correct_choice_probability(scored: pl.DataFrame) -> dict[str, float]:
    """question_id -> p(correct): the softmax of the per-choice ``score`` list at the ``answer`` index."""
    probabilities = {}
    for question_id, scores, answer in scored.select("question_id", "score", "answer").iter_rows():
        top = max(scores)
        weights = [math.exp(score - top) for score in scores]
        probabilities[str(question_id)] = weights[answer] / sum(weights)
    return probabilities


def paired_change(base: dict[str, float], tuned: dict[str, float], confidence: float = 0.95) -> dict:
    """The mean change of p(correct) from ``base`` to ``tuned`` (question_id -> probability, the same
    questions), in points, with its interval: ``mc_delta``, ``mc_delta_low``, ``mc_delta_high``, ``mc_pairs``."""
    if set(base) != set(tuned):
        raise ValueError(
            f"the base and the tuned model answered different questions ({len(base)} and {len(tuned)}, "
            f"{len(set(base) & set(tuned))} in common): the change is only defined on the same questions"
        )
    deltas = [100 * (tuned[question] - base[question]) for question in sorted(base)]
    mean = fmean(deltas) if deltas else float("nan")
    if len(deltas) < 2:
        return {"mc_delta": mean, "mc_delta_low": None, "mc_delta_high": None, "mc_pairs": len(deltas)}
    half = float(stats.t.ppf(0.5 + confidence / 2, len(deltas) - 1)) * stdev(deltas) / math.sqrt(len(deltas))
    return {"mc_delta": mean, "mc_delta_low": mean - half, "mc_delta_high": mean + half, "mc_pairs": len(deltas)}


def forgot(change: dict, margin: float = FORGETTING_MARGIN_POINTS) -> bool | None:
    """True when the interval reaches a drop of ``margin`` points or more; None without an interval."""
    if change.get("mc_delta_low") is None:
        return None
    return bool(change["mc_delta_low"] <= -margin)
