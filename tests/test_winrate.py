"""Win-rate statistics (docs/design.md §1.6) and the `croco winrate` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from croco_pipeline.core.evaluation.win_rates import (
    judgment_report,
    outcome_stats,
    parse_verdict,
    verdict_to_preference,
    win_rate_stats,
)

# ---------------------------------------------------------------- verdicts


def test_parse_verdict_reads_each_token() -> None:
    assert parse_verdict("Assistant A is better. [[1]]") == "1"
    assert parse_verdict("[[2]]") == "2"
    assert parse_verdict("Both are equally good: [[T]]") == "T"


def test_parse_verdict_last_match_wins() -> None:
    # Judges restate the format before deciding; the final token is the verdict.
    text = "Answer with [[1]], [[2]] or [[T]]. After comparing both... my verdict is [[2]]"
    assert parse_verdict(text) == "2"
    assert parse_verdict("[[2]] at first, but on reflection [[T]]") == "T"


@pytest.mark.parametrize("text", ["", "Assistant 1 is better", "[1]", "[[3]]", "[[x]]", "[[ 12 ]]", "[ [1] ]"])
def test_parse_verdict_unparseable_is_none(text: str) -> None:
    assert parse_verdict(text) is None


def test_verdict_to_preference_without_swap() -> None:
    assert verdict_to_preference("1", swapped=False) == 1.0
    assert verdict_to_preference("2", swapped=False) == 0.0
    assert verdict_to_preference("T", swapped=False) == 0.5


def test_verdict_to_preference_with_swap_refers_to_reference() -> None:
    # Swapped: the base model's answer is shown first, so [[1]] means the reference won.
    assert verdict_to_preference("1", swapped=True) == 0.0
    assert verdict_to_preference("2", swapped=True) == 1.0
    assert verdict_to_preference("T", swapped=True) == 0.5


def test_verdict_to_preference_none_and_invalid() -> None:
    assert verdict_to_preference(None, swapped=True) is None
    with pytest.raises(ValueError, match="unknown verdict"):
        verdict_to_preference("3", swapped=False)


# ---------------------------------------------------------------- statistics


def test_win_rate_and_standard_error_by_hand() -> None:
    stats = win_rate_stats([1, 0, 0.5, 1])
    # mean = 2.5 / 4 = 0.625
    assert stats.win_rate == pytest.approx(62.5)
    # squared deviations: .140625 + .390625 + .015625 + .140625 = .6875; / (n-1) = .229167
    # SE = sqrt(.229167) / sqrt(4) * 100 = 23.9357
    assert stats.standard_error == pytest.approx(math.sqrt(0.6875 / 3) / 2 * 100)
    assert stats.standard_error == pytest.approx(23.9357, abs=1e-4)
    assert (stats.n, stats.wins, stats.losses, stats.ties) == (4, 2, 1, 1)
    # no lengths: LC-WR is the plain win rate
    assert stats.lc_win_rate == 62.5 and stats.phi == 0.0


def test_single_judgment_has_zero_standard_error() -> None:
    stats = win_rate_stats([1])
    assert stats.win_rate == 100.0 and stats.standard_error == 0.0


def test_lc_equals_wr_when_all_lengths_equal() -> None:
    prefs = [1, 1, 0, 0.5, 1, 0]
    stats = win_rate_stats(prefs, [120] * 6, [120] * 6)
    assert stats.lc_win_rate == stats.win_rate == pytest.approx(50 + 100 / 12)
    assert stats.phi == 0.0


def test_lc_equals_wr_when_length_difference_is_constant() -> None:
    # Δ = +50 everywhere: std(Δ) = 0, nothing to control for.
    stats = win_rate_stats([1, 0, 1], [150, 150, 150], [100, 100, 100])
    assert stats.lc_win_rate == stats.win_rate
    assert stats.mean_model_length == 150 and stats.mean_reference_length == 100


def _objective(theta: float, phi: float, y: np.ndarray, x: np.ndarray) -> float:
    """docs/design.md §1.6 written out independently: −Σ[y log p + (1−y) log(1−p)] + φ²."""
    p = 1 / (1 + np.exp(-(theta + phi * x)))
    return float(-np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)) + phi**2)


def _length_biased_judgments() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # The model wins only when its answer is longer, loses when shorter, ties at equal length.
    y = np.array([1.0] * 6 + [0.0] * 2 + [0.5] * 4)
    model = np.array([300.0] * 6 + [100.0] * 2 + [200.0] * 4)
    reference = np.full(12, 200.0)
    return y, model, reference


def test_lc_below_wr_when_model_wins_only_with_longer_answers() -> None:
    y, model, reference = _length_biased_judgments()
    stats = win_rate_stats(y, model, reference)
    assert stats.win_rate == pytest.approx(100 * 8 / 12)
    assert stats.phi > 0  # the judge rewards length
    assert stats.lc_win_rate < stats.win_rate
    assert stats.lc_win_rate == pytest.approx(100 / (1 + math.exp(-stats.theta)))


def test_lc_fit_is_the_penalised_maximum_likelihood() -> None:
    y, model, reference = _length_biased_judgments()
    stats = win_rate_stats(y, model, reference)
    delta = model - reference
    x = np.tanh(delta / np.std(delta))
    best = _objective(stats.theta, stats.phi, y, x)
    # Any nearby (θ, φ) is worse: the fit is the minimum of the stated objective.
    for d_theta, d_phi in [(1e-3, 0), (-1e-3, 0), (0, 1e-3), (0, -1e-3), (1e-3, 1e-3), (-1e-3, 1e-3)]:
        assert _objective(stats.theta + d_theta, stats.phi + d_phi, y, x) > best - 1e-9


def test_lc_is_invariant_to_length_units() -> None:
    # Δ is divided by std(Δ), so characters vs. tenths of characters must not matter.
    y, model, reference = _length_biased_judgments()
    a = win_rate_stats(y, model, reference)
    b = win_rate_stats(y, model * 10, reference * 10)
    assert b.lc_win_rate == pytest.approx(a.lc_win_rate, abs=1e-4)


def test_all_wins_gives_lc_near_100() -> None:
    stats = win_rate_stats([1, 1, 1], [10, 20, 30], [10, 10, 10])
    assert stats.win_rate == 100.0
    assert stats.lc_win_rate > 99.9


def test_invalid_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="no preferences"):
        win_rate_stats([])
    with pytest.raises(ValueError, match=r"preferences\[1\].*outside"):
        win_rate_stats([1, 2])
    with pytest.raises(ValueError, match="both"):
        win_rate_stats([1, 0], model_lengths=[1, 2])
    with pytest.raises(ValueError, match="align"):
        win_rate_stats([1, 0], [1, 2, 3], [1, 2, 3])


# ---------------------------------------------------------------- croco winrate


@pytest.fixture
def judgments_jsonl(tmp_path: Path) -> Path:
    rows = [
        {"language": "da", "preference": 1, "model_length": 300, "reference_length": 200},
        {"language": "da", "preference": 0, "model_length": 100, "reference_length": 200},
        {"language": "nl", "preference": 0.5, "model_length": 200, "reference_length": 200},
        {"language": "nl", "preference": 1, "model_length": 200, "reference_length": 200},
    ]
    path = tmp_path / "judgments.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_json(judgments_jsonl: Path, croco) -> None:
    result = croco("winrate", str(judgments_jsonl), "--format", "json")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["language"] for r in records] == ["da", "nl", "all", "average"]
    da, nl, everything, average = records
    assert {"language", "n", "wins", "losses", "ties", "win_rate", "standard_error", "lc_win_rate"} <= set(da)
    assert {"unparseable", "n_judged"} <= set(da) and "subcategories" not in da  # no subcategory column
    assert (da["n"], da["wins"], da["losses"], da["ties"], da["unparseable"], da["n_judged"]) == (2, 1, 1, 0, 0, 2)
    assert da["win_rate"] == 50.0 and da["standard_error"] == pytest.approx(50.0)
    # nl: equal lengths, so LC-WR = WR
    assert nl["win_rate"] == 75.0 and nl["lc_win_rate"] == 75.0 and nl["standard_error"] == pytest.approx(25.0)
    assert everything["n"] == 4 and everything["win_rate"] == 62.5
    assert average["win_rate"] == 62.5 and average["n_groups"] == 2  # (50 + 75) / 2


def test_cli_table_from_parquet(judgments_jsonl: Path, tmp_path: Path, croco) -> None:
    parquet = tmp_path / "judgments.parquet"
    pl.read_ndjson(judgments_jsonl).write_parquet(parquet)
    result = croco("winrate", str(parquet))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    header = ["language", "n", "wins", "losses", "ties", "WR", "%", "SE", "LC-WR", "%", "unparseable"]
    assert lines[0].split() == header
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"da", "nl", "all", "average"}
    assert rows["nl"][5:] == ["75.0", "25.0", "75.0", "0"]
    assert rows["all"][1] == "4" and rows["all"][5] == "62.5"


def test_cli_rejects_invalid_preference_naming_the_row(tmp_path: Path, croco) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"preference": 1, "model_length": 1, "reference_length": 1}\n'
        '{"preference": 0.7, "model_length": 1, "reference_length": 1}\n'
    )
    result = croco("winrate", str(path))
    assert result.returncode == 2
    assert "row 2" in result.stderr and "0.7" in result.stderr


def _raw_judgments(tmp_path: Path) -> Path:
    rows = [  # the evaluated model is output_1 unless swapped
        {"language": "da", "subcategory": "math", "judge_output": "Analysis...\n[[ 1 ]]", "swapped": False},
        {"language": "da", "subcategory": "math", "judge_output": "\\[\\[1\\]\\]", "swapped": True},
        {"language": "da", "subcategory": "coding", "judge_output": "Equal.\n[[t]]", "swapped": False},
        {"language": "da", "subcategory": "coding", "judge_output": "I cannot decide.", "swapped": True},
        {"language": "fr", "subcategory": "math", "judge_output": "[[1]] or [[2]]? [[2]]", "swapped": True},
        {"language": "fr", "subcategory": "math", "judge_output": "[[M]]", "swapped": True},
    ]
    path = tmp_path / "raw.jsonl"
    path.write_text("".join(json.dumps({**r, "model_length": 100, "reference_length": 100}) + "\n" for r in rows))
    return path


def test_cli_parses_raw_judge_outputs_and_counts_the_unparseable(tmp_path: Path, croco) -> None:
    result = croco("winrate", str(_raw_judgments(tmp_path)), "--format", "json")
    assert result.returncode == 0, result.stderr
    records = {r["language"]: r for r in json.loads(result.stdout)}
    da, fr = records["da"], records["fr"]
    # da: win, loss (swapped [[1]] is the reference), tie; one without a verdict
    assert (da["wins"], da["losses"], da["ties"], da["unparseable"], da["n_judged"]) == (1, 1, 1, 1, 3)
    assert da["win_rate"] == 50.0
    assert da["subcategories"]["math"]["win_rate"] == 50.0
    assert da["subcategories"]["coding"] == {**da["subcategories"]["coding"], "ties": 1, "unparseable": 1, "n": 1}
    assert (fr["wins"], fr["ties"], fr["win_rate"]) == (1, 1, 75.0)
    assert records["all"]["unparseable"] == 1 and records["all"]["n_judged"] == 5
    assert records["average"]["win_rate"] == 62.5


@pytest.mark.parametrize(("tie_handling", "da_rate", "fr_rate"), [("win", 200 / 3, 100.0), ("loss", 100 / 3, 50.0)])
def test_cli_tie_handling(tmp_path: Path, tie_handling: str, da_rate: float, fr_rate: float, croco) -> None:
    result = croco("winrate", str(_raw_judgments(tmp_path)), "--format", "json", "--tie-handling", tie_handling)
    assert result.returncode == 0, result.stderr
    records = {r["language"]: r for r in json.loads(result.stdout)}
    assert records["da"]["win_rate"] == pytest.approx(da_rate) and records["fr"]["win_rate"] == fr_rate
    assert records["da"]["ties"] == 1  # ties are still counted as ties


def test_cli_table_shows_subcategories_and_refuses_raw_outputs_without_swapped(tmp_path: Path, croco) -> None:
    result = croco("winrate", str(_raw_judgments(tmp_path)))
    assert result.returncode == 0, result.stderr
    labels = [line.split()[0] for line in result.stdout.strip().splitlines()[2:]]
    assert labels == ["da", "da/coding", "da/math", "fr", "fr/math", "all", "all/coding", "all/math", "average"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"judge_output": "[[1]]", "model_length": 1, "reference_length": 1}\n')
    refused = croco("winrate", str(bad))
    assert refused.returncode == 2 and "swapped" in refused.stderr


def test_cli_missing_file(tmp_path: Path, croco) -> None:
    result = croco("winrate", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2 and "no such file" in result.stderr


def test_plot_bars_win_rates_per_language_and_system(tmp_path: Path) -> None:
    import matplotlib.image

    from croco_pipeline.core.io.plots import plot_bars

    table = pl.DataFrame(
        {
            "language": ["da", "da", "nl", "nl", "fr"],
            "system": ["mono", "multi", "mono", "multi", "mono"],
            "win_rate": [60.0, 55.0, 70.0, 48.0, 52.0],
            "standard_error": [3.0, 4.0, 5.0, 2.0, 3.0],
        }
    )
    path = plot_bars(table, "win_rate", "standard_error", "language", "system", tmp_path / "wr.png", "WR vs base")
    assert matplotlib.image.imread(path).ndim == 3  # a real, readable PNG
    plain = plot_bars(table.filter(pl.col("system") == "mono"), "win_rate", None, "language", None, tmp_path / "p.png")
    assert plain.is_file()
    with pytest.raises(ValueError, match="no column 'wr'"):
        plot_bars(table, "wr", None, "language", None, tmp_path / "x.png")


# ----------------------------------------------------------------------------- the paper's parser and ties


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("Output 1 is better.\n[[ 1 ]]", "1"),
        ("They are equal.\n[[t]]", "T"),
        ("Markdown escapes the brackets: \\[\\[2\\]\\]", "2"),
        ("A draw.\n[[M]]", "T"),
        ("[[m]]", "T"),
        ("[[1]] would be wrong; [[  2]]", "2"),
    ],
)
def test_parse_verdict_reads_the_forms_the_paper_accepts(text: str, verdict: str) -> None:
    assert parse_verdict(text) == verdict


def test_tie_handling_values_a_tie_as_win_half_or_loss() -> None:
    assert [verdict_to_preference("T", False, tie) for tie in ("win", "half", "loss")] == [1.0, 0.5, 0.0]
    assert verdict_to_preference("1", True, "win") == 0.0  # only ties change
    with pytest.raises(ValueError, match="tie_handling"):
        verdict_to_preference("T", False, "draw")


def test_outcome_stats_counts_verdicts_whatever_a_tie_is_worth() -> None:
    outcomes = ["win", "tie", "tie", "loss", None]
    half = outcome_stats(outcomes)
    assert (half["wins"], half["ties"], half["losses"], half["unparseable"], half["n_judged"]) == (1, 2, 1, 1, 4)
    assert half["win_rate"] == 50.0
    as_wins = outcome_stats(outcomes, tie_handling="win")
    assert (as_wins["wins"], as_wins["ties"], as_wins["win_rate"]) == (1, 2, 75.0)
    assert outcome_stats(outcomes, tie_handling="loss")["win_rate"] == 25.0
    assert outcome_stats([None, None])["win_rate"] is None


def test_judgment_report_has_subcategories_all_and_the_unweighted_average() -> None:
    df = pl.DataFrame(
        {
            "language": ["da"] * 4 + ["fr"] * 2,
            "subcategory": ["math", "math", "coding", "coding", "math", "math"],
            "outcome": ["win", "win", "loss", None, "loss", "tie"],
        }
    )
    records = {r["language"]: r for r in judgment_report(df)}
    assert list(records) == ["da", "fr", "all", "average"]
    da = records["da"]
    assert (da["n_judged"], da["unparseable"], da["win_rate"]) == (3, 1, pytest.approx(200 / 3))
    assert da["subcategories"]["math"]["win_rate"] == 100.0
    assert da["subcategories"]["coding"]["win_rate"] == 0.0 and da["subcategories"]["coding"]["unparseable"] == 1
    assert records["fr"]["win_rate"] == 25.0
    assert records["all"]["win_rate"] == pytest.approx(250 / 5)  # pooled: 2.5 of 5
    average = records["average"]
    assert average["win_rate"] == pytest.approx((200 / 3 + 25.0) / 2)  # unweighted: each language counts once
    assert average["standard_error"] == pytest.approx(
        math.sqrt(da["standard_error"] ** 2 + records["fr"]["standard_error"] ** 2) / 2
    )
