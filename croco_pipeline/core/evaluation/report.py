"""The comparison the paper makes, per language × system: base vs best-of-N SFT (per language and
multilingual) vs CroCo monolingual vs CroCo multilingual, and the unweighted average over languages.
One table (win rate vs base with SE and LC-WR, multiple-choice accuracy, mean reward, target-language
share, reward-model transfer accuracy), a bar chart and a Markdown page."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from croco_pipeline.core.evaluation.win_rates import unweighted_average
from croco_pipeline.core.io.markdown import markdown_table
from croco_pipeline.core.io.plots import plot_bars

SYSTEM_ORDER = ["base", "sft_best_of_n", "sft_multilingual", "croco_monolingual", "croco_multilingual"]

REPORT_COLUMNS = [
    "language",
    "system",
    "win_rate",
    "standard_error",
    "lc_win_rate",
    "n_judged",
    "mc_accuracy",
    "mc_ci_low",
    "mc_ci_high",
    "mean_reward",
    "language_share",
    "rm_transfer_accuracy",
]


AVERAGE = "average"


def average_rows(table: pl.DataFrame) -> pl.DataFrame:
    """Per tuned system evaluated in two or more languages, an ``average`` row as the paper reports it
    (:func:`~croco_pipeline.core.evaluation.win_rates.unweighted_average` of the languages' win rates);
    the base is 50 there too. Other columns are null."""
    rows = []
    for (system,), part in table.filter(pl.col("win_rate").is_not_null()).group_by("system", maintain_order=True):
        if part.height < 2:
            continue
        if system == "base":
            rows.append({"language": AVERAGE, "system": system, "win_rate": 50.0, "lc_win_rate": 50.0})
            continue
        average = unweighted_average(part.select("win_rate", "standard_error", "lc_win_rate", "n_judged").to_dicts())
        average.pop("n_groups")
        rows.append({"language": AVERAGE, "system": system, **average})
    return pl.DataFrame(
        rows,
        schema={
            "language": pl.String,
            "system": pl.String,
            "win_rate": pl.Float64,
            "standard_error": pl.Float64,
            "lc_win_rate": pl.Float64,
            "n_judged": pl.Int64,
        },
    )


def build_report_table(
    base_rows: pl.DataFrame, system_rows: list[pl.DataFrame], transfer: pl.DataFrame | None
) -> pl.DataFrame:
    """One row per (language, system), then an ``average`` row per system over its languages
    (:func:`average_rows`). The base model's win rate against itself is 50 by definition."""
    base = base_rows.select(
        "language",
        "system",
        pl.lit(50.0).alias("win_rate"),
        pl.lit(None, pl.Float64).alias("standard_error"),
        pl.lit(50.0).alias("lc_win_rate"),
        pl.lit(None, pl.Int64).alias("n_judged"),
        "mc_accuracy",
        "mc_ci_low",
        "mc_ci_high",
        "mean_reward",
        "language_share",
    )
    systems = [
        rows.select(
            "language",
            "system",
            "win_rate",
            "standard_error",
            "lc_win_rate",
            pl.col("n_judged").cast(pl.Int64),
            "mc_accuracy",
            "mc_ci_low",
            "mc_ci_high",
            pl.col("tuned_mean_reward").alias("mean_reward"),
            pl.col("tuned_language_share").alias("language_share"),
        )
        for rows in system_rows
        if rows.height
    ]
    table = pl.concat([base, *systems], how="vertical_relaxed")
    if transfer is not None and transfer.height:
        overall = transfer.filter(pl.col("kind") == "all").select(
            "language", pl.col("accuracy").alias("rm_transfer_accuracy")
        )
        table = table.join(overall, on="language", how="left")
    else:
        table = table.with_columns(pl.lit(None, pl.Float64).alias("rm_transfer_accuracy"))
    table = pl.concat([table, average_rows(table)], how="diagonal_relaxed")
    order = {name: index for index, name in enumerate(SYSTEM_ORDER)}
    return (
        table.with_columns(
            pl.col("system").replace_strict(order, default=len(order)).alias("_order"),
            (pl.col("language") == AVERAGE).alias("_average"),
        )
        .sort("_average", "language", "_order")
        .drop("_order", "_average")
        .select(REPORT_COLUMNS)
    )


def write_report(table: pl.DataFrame, folder: Path) -> dict[str, Path | None]:
    """Write ``report.md``, ``report.parquet`` and (once a tuned system is evaluated) ``win_rates.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    tuned = table.filter(pl.col("system") != "base")
    chart = None
    if tuned.height:
        chart = plot_bars(
            tuned,
            "win_rate",
            "standard_error",
            "language",
            "system",
            folder / "win_rates.png",
            title="Win rate vs the base model (%), ± standard error",
        )
    rounded = table.with_columns(pl.col(pl.Float64).round(3))
    markdown = "\n".join(
        [
            "# CroCo report",
            "",
            "Win rate of each system's answers over the base model's on held-out prompts (ties 0.5; base = 50 by "
            "definition), length-controlled win rate, multiple-choice accuracy with its 95% Wilson interval "
            "(catastrophic forgetting), mean reward, share of answers in the target language, and the reward "
            "scorer's pairwise accuracy on known better/worse answers in the language.",
            "",
            markdown_table(rounded, max_rows=len(rounded), max_chars=30),
            "",
            "## CroCo against its base, at a glance",
            "",
            markdown_table(effect_table(table), max_rows=len(table), max_chars=60),
            "",
            "Criteria: " + "; ".join(EFFECT_CRITERIA.values()) + ".",
            "",
            "![win rates](win_rates.png)" if chart else "(No tuned system evaluated yet.)",
        ]
    )
    (folder / "report.md").write_text(markdown + "\n", encoding="utf-8")
    table.write_parquet(folder / "report.parquet")
    return {"markdown": folder / "report.md", "chart": chart, "table": folder / "report.parquet"}


# What the laptop demo must show for a language to count as a success (see the README).
EFFECT_CRITERIA = {
    "win_rate": "win rate - 2·SE > 50 (the tuned model beats its base)",
    "language_share": "share of answers in the target language rises by at least 0.10",
    "mc_accuracy": "multiple-choice accuracy falls by at most 5 points (no forgetting)",
}


def effect_table(table: pl.DataFrame, system: str = "croco_monolingual") -> pl.DataFrame:
    """Per language, base → tuned at a glance: win rate ± SE, target-language share and
    multiple-choice accuracy, each judged against :data:`EFFECT_CRITERIA`, and a plain verdict."""
    table = table.filter(pl.col("language") != AVERAGE)  # the verdict is per language
    base = table.filter(pl.col("system") == "base").select(
        "language", pl.col("language_share").alias("share_base"), pl.col("mc_accuracy").alias("mc_base")
    )
    tuned = table.filter(pl.col("system") == system).select(
        "language",
        "win_rate",
        "standard_error",
        pl.col("language_share").alias("share_tuned"),
        pl.col("mc_accuracy").alias("mc_tuned"),
    )
    rows = []
    for row in tuned.join(base, on="language", how="left").sort("language").iter_rows(named=True):
        wins = row["win_rate"] is not None and row["win_rate"] - 2 * (row["standard_error"] or 0) > 50
        share_up = (
            None not in (row["share_tuned"], row["share_base"]) and row["share_tuned"] - row["share_base"] >= 0.10
        )
        mc_kept = None if None in (row["mc_tuned"], row["mc_base"]) else 100 * (row["mc_base"] - row["mc_tuned"]) <= 5
        missed = [
            name for name, ok in (("win rate", wins), ("language share", share_up), ("MC", mc_kept)) if ok is False
        ]
        rows.append(
            {
                "language": row["language"],
                "win rate vs base": f"{row['win_rate']:.1f} ± {row['standard_error'] or 0:.1f}"
                + (" ✓" if wins else " ✗"),
                "target-language share": _arrow(row["share_base"], row["share_tuned"], 1.0)
                + (" ✓" if share_up else " ✗"),
                "MC accuracy %": _arrow(row["mc_base"], row["mc_tuned"], 100.0)
                + ("" if mc_kept is None else " ✓" if mc_kept else " ✗"),
                "verdict": "CroCo helps" if not missed else "not shown: " + ", ".join(missed),
            }
        )
    schema = ["language", "win rate vs base", "target-language share", "MC accuracy %", "verdict"]
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema={name: pl.String for name in schema})


def _arrow(before: float | None, after: float | None, scale: float) -> str:
    if before is None or after is None:
        return "n/a"
    digits = 2 if scale == 1.0 else 1
    return f"{before * scale:.{digits}f} → {after * scale:.{digits}f}"
