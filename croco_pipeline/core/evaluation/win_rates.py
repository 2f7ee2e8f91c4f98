"""Pairwise win rates against the base model, as the paper reports them (docs/design.md §1.6).

An LLM judge sees a prompt and two answers, one from the tuned model and one from the base model (the
"reference"), in random order, and ends its verdict with ``[[1]]``, ``[[2]]`` or ``[[T]]`` (tie).
This module turns verdicts into preferences (1 = tuned model wins, 0 = loses, 0.5 = tie) and
preferences into statistics:

- win rate = mean(preference) × 100;
- standard error = sample standard deviation (ddof 1) / √n × 100;
- length-controlled win rate (LC-WR): judges favour longer answers, so fit
  ``p = σ(θ + φ·tanh(Δ / std(Δ)))`` with Δ = model length − reference length (characters) and report
  σ(θ) × 100, the win rate of an answer as long as the reference's. The fit minimises the negative
  log-likelihood (fractional targets, so ties count half) plus 1.0·φ², by L-BFGS-B from (0, 0).

Nothing here imports torch or Dagster: numpy, scipy (the fit) and polars (tables).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import polars as pl

# The judge's verdict tokens, read as the paper's parser reads them: escaped brackets (``\[``, ``\]``,
# as some judges write in Markdown) count as brackets, spaces may pad the token, and the letters t/T and
# m/M both mean a tie. The judge may quote the format before deciding, so the LAST match counts.
VERDICT_PATTERN = re.compile(r"\[\[\s*([12tTmM])\s*\]\]")
_TIE_LETTERS = frozenset("tTmM")

# How a tie counts towards the win rate (``croco winrate --tie-handling``); the paper counts it as half.
TIE_VALUES = {"win": 1.0, "half": 0.5, "loss": 0.0}

# Weight of the φ² penalty in the length-control fit (the reference uses 1.0).
LC_PHI_PENALTY = 1.0
# Below this std(Δ) (characters) the lengths carry no signal and LC-WR falls back to the plain win rate.
_MIN_LENGTH_STD = 1e-9


def parse_verdict(text: str) -> str | None:
    """The judge's verdict in ``text``: ``"1"``, ``"2"`` or ``"T"``; ``None`` if there is none.

    The paper's parser: ``\\[`` and ``\\]`` become brackets first, then the last of ``[[1]]``,
    ``[[2]]``, ``[[T]]`` wins, with spaces allowed inside the brackets and ``t``, ``m``, ``M`` read as
    ``T`` (so ``[[ 1 ]]``, ``[[t]]``, ``\\[\\[2\\]\\]`` and ``[[M]]`` all count). The last match
    wins because judges often restate the answer format ("reply with [[1]] or [[2]]") before giving
    their own verdict at the end.
    """
    if not text:
        return None
    matches = VERDICT_PATTERN.findall(text.replace("\\[", "[").replace("\\]", "]"))
    if not matches:
        return None
    return "T" if matches[-1] in _TIE_LETTERS else matches[-1]


def verdict_outcome(verdict: str | None, swapped: bool) -> str | None:
    """The tuned model's outcome: ``"win"``, ``"loss"`` or ``"tie"``; ``None`` for no verdict.

    Unswapped, the tuned model's answer is shown first, so ``[[1]]`` is a win. With ``swapped=True`` the
    reference (base model) is shown first, so ``[[1]]`` is a loss and ``[[2]]`` a win.
    """
    if verdict is None:
        return None
    if verdict == "T":
        return "tie"
    if verdict not in ("1", "2"):
        raise ValueError(f"unknown verdict {verdict!r}; expected '1', '2' or 'T'")
    model_first = not swapped
    return "win" if (verdict == "1") == model_first else "loss"


def verdict_outcomes(verdicts: Sequence[str | None], swaps: Sequence[bool]) -> list[str | None]:
    """:func:`verdict_outcome` of each (verdict, swapped) pair, e.g. of a judgments table's two columns."""
    return [verdict_outcome(verdict, swapped) for verdict, swapped in zip(verdicts, swaps, strict=True)]


TieHandling = Literal["win", "half", "loss"]  # what a tie counts in a win rate (see TIE_VALUES)


def outcome_value(outcome: str | None, tie_handling: str = "half") -> float | None:
    """A win counts 1, a loss 0 and a tie ``TIE_VALUES[tie_handling]`` (half by default); None stays None."""
    if tie_handling not in TIE_VALUES:
        raise ValueError(f"tie_handling must be one of {', '.join(TIE_VALUES)}, got {tie_handling!r}")
    if outcome is None:
        return None
    return {"win": 1.0, "loss": 0.0, "tie": TIE_VALUES[tie_handling]}[outcome]


def verdict_to_preference(verdict: str | None, swapped: bool, tie_handling: str = "half") -> float | None:
    """Preference for the tuned model: 1.0 wins, 0.0 loses, a tie by ``tie_handling`` (0.5); ``None``
    for no verdict. See :func:`verdict_outcome` for how ``swapped`` turns the verdict around."""
    return outcome_value(verdict_outcome(verdict, swapped), tie_handling)


@dataclass
class WinRateStats:
    """Win-rate statistics of one set of judgments. Rates and the standard error are percentages."""

    n: int
    wins: int
    losses: int
    ties: int
    win_rate: float
    standard_error: float
    lc_win_rate: float
    phi: float  # > 0: the judge prefers the longer answer
    theta: float  # logit of the length-controlled win probability
    mean_model_length: float | None
    mean_reference_length: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def _sigmoid(z: np.ndarray | float) -> np.ndarray | float:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z)))  # numerically stable σ


def _logit(p: float) -> float:
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))


def _lc_objective(params: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    """Negative log-likelihood + φ² and its gradient, at params = (θ, φ).

    −[y log σ(z) + (1−y) log(1−σ(z))] = softplus(z) − y·z, which stays finite for large |z|.
    """
    theta, phi = params
    z = theta + phi * x
    value = float(np.sum(np.logaddexp(0.0, z) - y * z) + LC_PHI_PENALTY * phi**2)
    residual = _sigmoid(z) - y
    grad = np.array([residual.sum(), (residual * x).sum() + 2.0 * LC_PHI_PENALTY * phi])
    return value, grad


def fit_length_control(preferences: np.ndarray, length_delta: np.ndarray) -> tuple[float, float] | None:
    """(θ, φ) of p = σ(θ + φ·tanh(Δ/std(Δ))), or ``None`` when std(Δ) ≈ 0 (the lengths carry no signal)."""
    y = np.asarray(preferences, dtype=float)
    delta = np.asarray(length_delta, dtype=float)
    std = float(np.std(delta))  # population std (ddof 0), as numpy computes it
    if not math.isfinite(std) or std < _MIN_LENGTH_STD:
        return None
    x = np.tanh(delta / std)
    from scipy.optimize import minimize  # imported here: only the fit needs scipy

    result = minimize(_lc_objective, x0=np.zeros(2), args=(y, x), jac=True, method="L-BFGS-B")
    theta, phi = result.x
    return float(theta), float(phi)


def _as_float_array(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] is {array[bad[0]]!r}; every value must be a finite number")
    return array


def win_rate_stats(
    preferences: Sequence[float] | np.ndarray,
    model_lengths: Sequence[float] | np.ndarray | None = None,
    reference_lengths: Sequence[float] | np.ndarray | None = None,
) -> WinRateStats:
    """Win rate, standard error and length-controlled win rate of preferences in [0, 1].

    ``model_lengths`` and ``reference_lengths`` are the two answers' lengths in characters, aligned with
    ``preferences``; without them the LC-WR equals the win rate. Unparseable verdicts must be dropped
    (and counted) before calling this.
    """
    y = _as_float_array(preferences, "preferences")
    if y.size == 0:
        raise ValueError("no preferences: cannot compute a win rate from zero judgments")
    outside = np.flatnonzero((y < 0.0) | (y > 1.0))
    if outside.size:
        i = outside[0]
        raise ValueError(f"preferences[{i}] = {y[i]!r} is outside [0, 1] (1 = win, 0.5 = tie, 0 = loss)")
    n = int(y.size)

    win_rate = float(y.mean() * 100.0)
    standard_error = float(np.std(y, ddof=1) / math.sqrt(n) * 100.0) if n >= 2 else 0.0

    if (model_lengths is None) != (reference_lengths is None):
        raise ValueError("give both model_lengths and reference_lengths, or neither")
    mean_model_length = mean_reference_length = None
    fit = None
    if model_lengths is not None and reference_lengths is not None:
        m = _as_float_array(model_lengths, "model_lengths")
        r = _as_float_array(reference_lengths, "reference_lengths")
        if m.size != n or r.size != n:
            raise ValueError(
                f"lengths must align with preferences: {n} preferences, "
                f"{m.size} model lengths, {r.size} reference lengths"
            )
        mean_model_length, mean_reference_length = float(m.mean()), float(r.mean())
        fit = fit_length_control(y, m - r)
    if fit is None:  # no length signal: the length-controlled win rate is the win rate
        theta, phi, lc_win_rate = _logit(y.mean()), 0.0, win_rate
    else:
        theta, phi = fit
        lc_win_rate = float(_sigmoid(theta) * 100.0)

    return WinRateStats(
        n=n,
        wins=int(np.sum(y == 1.0)),
        losses=int(np.sum(y == 0.0)),
        ties=int(np.sum(y == 0.5)),
        win_rate=win_rate,
        standard_error=standard_error,
        lc_win_rate=lc_win_rate,
        phi=phi,
        theta=theta,
        mean_model_length=mean_model_length,
        mean_reference_length=mean_reference_length,
    )


# The row over every judgment, and the unweighted mean over languages that the paper reports beside
# each language's row.
ALL_GROUP = "all"
AVERAGE_GROUP = "average"
OUTCOMES = ("win", "loss", "tie")


def outcome_stats(
    outcomes: Sequence[str | None],
    model_lengths: Sequence[float] | None = None,
    reference_lengths: Sequence[float] | None = None,
    tie_handling: str = "half",
) -> dict:
    """Counts and win-rate statistics of one set of judgments, given as outcomes (``None``: unparseable).

    ``wins``/``losses``/``ties`` count verdicts, whatever ``tie_handling`` makes of a tie; unparseable
    judgments are excluded from the statistics and counted in ``unparseable``. Rates are null when no
    judgment could be parsed.
    """
    outcomes = list(outcomes)
    unknown = sorted({o for o in outcomes if o is not None and o not in OUTCOMES})
    if unknown:
        raise ValueError(f"unknown outcome(s) {unknown}; expected one of {', '.join(OUTCOMES)} or None")
    judged = [i for i, outcome in enumerate(outcomes) if outcome is not None]
    row: dict = {
        "n_judgments": len(outcomes),
        "unparseable": len(outcomes) - len(judged),
        "n_judged": len(judged),
        "wins": outcomes.count("win"),
        "losses": outcomes.count("loss"),
        "ties": outcomes.count("tie"),
        "win_rate": None,
        "standard_error": None,
        "lc_win_rate": None,
        "phi": None,
    }
    if judged:
        lengths = (
            None
            if model_lengths is None or reference_lengths is None
            else ([model_lengths[i] for i in judged], [reference_lengths[i] for i in judged])
        )
        stats = win_rate_stats([outcome_value(outcomes[i], tie_handling) for i in judged], *(lengths or (None, None)))
        row.update(
            win_rate=stats.win_rate,
            standard_error=stats.standard_error,
            lc_win_rate=stats.lc_win_rate,
            phi=stats.phi,
        )
    return row


def judgment_report(
    df: "pl.DataFrame",
    group_col: str = "language",
    *,
    subcategory_col: str | None = "subcategory",
    tie_handling: str = "half",
) -> list[dict]:
    """The paper's results from a table of judgments with an ``outcome`` column (win/loss/tie/null).

    One record per value of ``group_col`` (sorted), each with :func:`outcome_stats` and, when
    ``subcategory_col`` is a column, ``subcategories``: the same statistics per subcategory. Then an
    ``"all"`` record over every judgment and an ``"average"`` record: the unweighted mean of the groups'
    win rates and LC win rates (standard error √(Σ SE²) / k, the groups being independent samples),
    over the groups that have a win rate. Length columns (``model_length``, ``reference_length``) are
    used when present.
    """
    import polars as pl

    if "outcome" not in df.columns:
        raise ValueError(f"judgments need an 'outcome' column; got columns {df.columns}")
    has_lengths = "model_length" in df.columns and "reference_length" in df.columns
    with_subcategories = subcategory_col is not None and subcategory_col in df.columns

    def stats(part: "pl.DataFrame", subcategories: bool) -> dict:
        row = outcome_stats(
            part["outcome"].to_list(),
            part["model_length"].to_list() if has_lengths else None,
            part["reference_length"].to_list() if has_lengths else None,
            tie_handling,
        )
        if subcategories:
            labels = part[subcategory_col].cast(pl.String).fill_null("(none)")
            row["subcategories"] = {
                label: stats(part.filter(labels == label), False) for label in sorted(labels.unique().to_list())
            }
        return row

    records: list[dict] = []
    if group_col in df.columns:
        groups = df[group_col].cast(pl.String)
        if groups.is_null().any():
            raise ValueError(f"row {int(groups.is_null().arg_true()[0])}: {group_col} is missing")
        for group in sorted(groups.unique().to_list()):
            records.append({group_col: group, **stats(df.filter(groups == group), with_subcategories)})
    rated = [r for r in records if r["win_rate"] is not None]
    records.append({group_col: ALL_GROUP, **stats(df, with_subcategories)})
    if rated:
        records.append({group_col: AVERAGE_GROUP, **unweighted_average(rated)})
    return records


def unweighted_average(groups: Sequence[dict]) -> dict:
    """The paper's average over languages: each group (a dict with ``win_rate``, ``standard_error``,
    ``lc_win_rate``, ``n_judged``) counts once, however many judgments it has. The standard error is
    √(Σ SE²) / k, the groups being independent samples."""
    k = len(groups)
    if not k:
        raise ValueError("no groups to average")
    return {
        "n_groups": k,
        "n_judged": sum(g["n_judged"] for g in groups),
        "win_rate": sum(g["win_rate"] for g in groups) / k,
        "standard_error": math.sqrt(sum(g["standard_error"] ** 2 for g in groups)) / k,
        "lc_win_rate": sum(g["lc_win_rate"] for g in groups) / k,
    }
