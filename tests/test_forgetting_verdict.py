"""The demo's verdict lines (did SFT forget, did CroCo?) and the training-loss check, on hand-made rows."""

from __future__ import annotations

import polars as pl

from croco_pipeline.core.evaluation.report import forgetting_state, forgetting_verdicts
from croco_pipeline.core.training.schedule import loss_progress


def _row(language: str, system: str, delta: float | None, low: float | None, high: float | None) -> dict:
    return {"language": language, "system": system, "mc_delta": delta, "mc_delta_low": low, "mc_delta_high": high}


def test_forgetting_state_reads_the_interval_against_the_margin() -> None:
    assert forgetting_state(_row("cy", "sft_best_of_n", -9.0, -12.0, -6.0)) == "forgot"  # wholly below -5
    assert forgetting_state(_row("cy", "sft_best_of_n", -3.0, -7.0, 1.0)) == "not ruled out"  # reaches -5
    assert forgetting_state(_row("cy", "sft_best_of_n", 0.5, -4.0, 5.0)) == "no"  # stays above -5
    assert forgetting_state(_row("cy", "sft_best_of_n", -6.0, -5.0, -5.0)) == "not ruled out"  # -5 itself reached
    assert forgetting_state(_row("cy", "sft_best_of_n", 1.0, None, None)) is None


def test_one_verdict_line_per_language_sft_against_croco() -> None:
    table = pl.DataFrame(
        [
            _row("cy", "base", None, None, None),
            _row("cy", "sft_best_of_n", -9.0, -12.0, -6.0),
            _row("cy", "sft_multilingual", -1.0, -4.0, 2.0),
            _row("cy", "croco_monolingual", 1.0, -2.0, 4.0),
            _row("cy", "croco_multilingual", 0.0, -3.0, 3.0),
            _row("ga", "croco_monolingual", -2.0, -6.0, 2.0),
            _row("ga", "sft_best_of_n", 0.0, None, None),
            _row("average", "sft_best_of_n", -9.0, -12.0, -6.0),
        ]
    )
    assert forgetting_verdicts(table) == [
        "cy: SFT forgot (mono -9.0 [-12.0, -6.0], multilingual -1.0 [-4.0, +2.0]); "
        "CroCo did not forget (mono +1.0 [-2.0, +4.0], multilingual +0.0 [-3.0, +3.0])",
        "ga: SFT not measured (mono n/a); CroCo forgetting not ruled out (mono -2.0 [-6.0, +2.0])",
    ]


def test_loss_progress_tells_a_run_that_learned_from_one_that_did_not() -> None:
    falling = [{"loss": value} for value in [5.2, 5.0, 4.6, 4.0, 3.5, 3.0, 2.6, 2.4]]
    flat = [{"loss": value} for value in [5.2, 5.1, 5.3, 5.0, 5.2, 5.1, 5.0, 5.1]]
    summary = {"train_loss": 4.0, "train_runtime": 1.0}  # the trainer's closing entry has no "loss"
    learned = loss_progress([*falling, summary])
    assert (learned["first_loss"], learned["last_loss"]) == (5.2, 2.4)
    assert (learned["start_loss"], learned["end_loss"]) == (5.1, 2.5) and learned["learned"]
    assert not loss_progress(flat)["learned"]
    assert loss_progress([summary]) == {}
