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
    "mc_delta",
    "mc_delta_low",
    "mc_delta_high",
    "mean_reward",
    "language_share",
    "language_share_independent",
    "identifier_agreement",
    "judge",
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
        pl.lit(None, pl.Float64).alias("mc_delta"),
        pl.lit(None, pl.Float64).alias("mc_delta_low"),
        pl.lit(None, pl.Float64).alias("mc_delta_high"),
        "mean_reward",
        "language_share",
        _optional(base_rows, "language_share_independent"),
        pl.lit(None, pl.Float64).alias("identifier_agreement"),
        pl.lit(None, pl.String).alias("judge"),
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
            _optional(rows, "mc_delta"),
            _optional(rows, "mc_delta_low"),
            _optional(rows, "mc_delta_high"),
            pl.col("tuned_mean_reward").alias("mean_reward"),
            pl.col("tuned_language_share").alias("language_share"),
            _optional(rows, "tuned_language_share_independent").alias("language_share_independent"),
            _optional(rows, "identifier_agreement"),
            _optional(rows, "judge", pl.String),
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


def _optional(frame: pl.DataFrame, name: str, dtype: pl.DataType = pl.Float64) -> pl.Expr:
    """A column that rows written by an older croco may lack (null there)."""
    return pl.col(name) if name in frame.columns else pl.lit(None, dtype).alias(name)


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
            "definition; `judge` says who judged), length-controlled win rate, multiple-choice accuracy with its "
            "95% Wilson interval and the paired change in the probability put on the correct choice (forgetting), "
            "mean reward, share of answers in the target language by the reward's identifier and by an "
            "independent one, and the reward scorer's pairwise accuracy on known better/worse answers.",
            "",
            markdown_table(rounded, max_rows=len(rounded), max_chars=30),
            "",
            "## Each tuned system against its base, at a glance",
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
    "win_rate": "win rate - 2·SE > 50 (the tuned model beats its base, as the judge named in the table sees it)",
    "language_share": "the share of answers in the target language, by an identifier independent of the reward's, "
    "rises by at least 0.10",
    "forgetting": "no forgetting: the 95% interval of the paired change in the probability put on the correct "
    "multiple-choice answer stays above -5 points",
}
FORGETTING_MARGIN = 5.0  # points (core.evaluation.forgetting)
SYSTEM_LABELS = {
    "croco_monolingual": "CroCo",
    "croco_multilingual": "CroCo multilingual",
    "sft_best_of_n": "SFT best-of-N",
    "sft_multilingual": "SFT multilingual",
}


def tuned_systems(table: pl.DataFrame) -> tuple[str, ...]:
    """The tuned systems the table has, CroCo first (the order of SYSTEM_LABELS)."""
    present = set(table["system"])
    return tuple(system for system in SYSTEM_LABELS if system in present)


def effect_table(table: pl.DataFrame, systems: tuple[str, ...] | None = None) -> pl.DataFrame:
    """Per language and tuned system, base → tuned at a glance: win rate ± SE (and who judged), the
    target-language share by the independent identifier, and the paired forgetting measure with its
    interval, each judged against :data:`EFFECT_CRITERIA`, and a plain verdict."""
    table = table.filter(pl.col("language") != AVERAGE)  # the verdict is per language
    systems = tuned_systems(table) if systems is None else systems
    base = table.filter(pl.col("system") == "base").select(
        "language", pl.col("language_share_independent").alias("share_base")
    )
    rows = []
    for system in systems:
        tuned = table.filter(pl.col("system") == system).join(base, on="language", how="left").sort("language")
        for row in tuned.iter_rows(named=True):
            rows.append(_effect_row(row, system, len(systems) > 1))
    schema = [
        "language",
        "system",
        "win rate vs base",
        "judge",
        "in-language share",
        "Δ p(correct) [95% CI]",
        "verdict",
    ]
    if not rows:
        return pl.DataFrame(schema={name: pl.String for name in schema})
    frame = pl.DataFrame(rows, schema=schema)
    return frame if len(systems) > 1 else frame.drop("system")


def share_rose(base: float | None, tuned: float | None) -> bool | None:
    """The language-share criterion of :data:`EFFECT_CRITERIA` (None when a share is unknown)."""
    return None if None in (base, tuned) else tuned - base >= 0.10


def share_not_shown(table: pl.DataFrame, system: str = "croco_monolingual") -> list[str]:
    """The languages where ``system`` missed the language-share criterion, in the report ``table``."""
    per_language = table.filter(pl.col("language") != AVERAGE)
    shares = per_language.pivot("system", index="language", values="language_share_independent")
    if system not in shares.columns or "base" not in shares.columns:
        return []
    return [
        language
        for language, base, tuned in shares.select("language", "base", system).iter_rows()
        if share_rose(base, tuned) is False
    ]


def _effect_row(row: dict, system: str, several: bool) -> dict:
    wins = row["win_rate"] is not None and row["win_rate"] - 2 * (row["standard_error"] or 0) > 50
    share_up = share_rose(row["share_base"], row["language_share_independent"])
    kept = None if row["mc_delta_low"] is None else row["mc_delta_low"] > -FORGETTING_MARGIN
    missed = [name for name, ok in (("win rate", wins), ("language share", share_up)) if ok is False]
    verdict = "helps" if not missed else "not shown: " + ", ".join(missed)
    forgetting = forgetting_state(row)  # the same words as the per-language forgetting lines
    if forgetting is not None:
        verdict += "; " + ("no forgetting" if forgetting == "no" else FAMILY_WORDS[forgetting])
    return {
        "language": row["language"],
        "system": SYSTEM_LABELS.get(system, system),
        "win rate vs base": "n/a"
        if row["win_rate"] is None
        else f"{row['win_rate']:.1f} ± {row['standard_error'] or 0:.1f}" + (" ✓" if wins else " ✗"),
        "judge": _judge_label(row.get("judge")),
        "in-language share": _arrow(row["share_base"], row["language_share_independent"], 1.0)
        + ("" if share_up is None else " ✓" if share_up else " ✗"),
        "Δ p(correct) [95% CI]": "n/a"
        if row["mc_delta"] is None
        else f"{row['mc_delta']:+.1f} [{row['mc_delta_low']:+.1f}, {row['mc_delta_high']:+.1f}]"
        + (" ✓" if kept else " ✗"),
        "verdict": (SYSTEM_LABELS.get(system, system) + " " if not several else "") + verdict,
    }


def _judge_label(judge: str | None) -> str:
    """Who judged, and whether it also chose the training pairs (the reward scorer did)."""
    if not judge:
        return "n/a"
    if judge.startswith("reward"):
        return f"{judge.removeprefix('reward: ')} (also chose the pairs)"
    return judge


def _arrow(before: float | None, after: float | None, scale: float) -> str:
    if before is None or after is None:
        return "n/a"
    digits = 2 if scale == 1.0 else 1
    return f"{before * scale:.{digits}f} → {after * scale:.{digits}f}"


# The paper's claim, per language: best-of-N SFT forgets, CroCo does not. Each family's systems, and how
# each is named in a verdict line.
FORGETTING_FAMILIES = {
    "SFT": {"sft_best_of_n": "mono", "sft_multilingual": "multilingual"},
    "CroCo": {"croco_monolingual": "mono", "croco_multilingual": "multilingual"},
}


def forgetting_state(change: dict) -> str | None:
    """How one tuned model's paired change of p(correct) (``mc_delta``, ``mc_delta_low``, ``mc_delta_high``,
    in points) reads against the margin of :mod:`core.evaluation.forgetting`: ``"forgot"`` when the whole
    95% interval lies below −margin (a significant loss of more than the margin), ``"not ruled out"`` when
    the interval reaches −margin (``forgetting.forgot``: the data cannot exclude such a loss), ``"no"`` when
    it stays above (no forgetting), None without an interval."""
    from croco_pipeline.core.evaluation.forgetting import FORGETTING_MARGIN_POINTS, forgot

    reaches = forgot(change)
    if reaches is None:
        return None
    if change["mc_delta_high"] < -FORGETTING_MARGIN_POINTS:
        return "forgot"
    return "not ruled out" if reaches else "no"


FAMILY_WORDS = {
    "forgot": "forgot",
    "not ruled out": "forgetting not ruled out",
    "no": "did not forget",
    None: "not measured",
}


def forgetting_verdicts(table: pl.DataFrame) -> list[str]:
    """One line per language: did SFT forget, and did CroCo? A family forgot when one of its models did
    (:func:`forgetting_state`, the worst of mono and multilingual counts); each model's change follows."""
    table = table.filter(pl.col("language") != AVERAGE)
    severity = {"forgot": 3, "not ruled out": 2, "no": 1, None: 0}
    lines = []
    for language in sorted(set(table.filter(pl.col("system") != "base")["language"])):
        parts = []
        for family, systems in FORGETTING_FAMILIES.items():
            rows = table.filter((pl.col("language") == language) & pl.col("system").is_in(list(systems)))
            details, states = [], []
            for row in sorted(rows.iter_rows(named=True), key=lambda row: list(systems).index(row["system"])):
                state = forgetting_state(row)
                states.append(state)
                change = (
                    "n/a"
                    if state is None
                    else f"{row['mc_delta']:+.1f} [{row['mc_delta_low']:+.1f}, {row['mc_delta_high']:+.1f}]"
                )
                details.append(f"{systems[row['system']]} {change}")
            if not details:
                continue
            worst = max(states, key=lambda state: severity[state])
            parts.append(f"{family} {FAMILY_WORDS[worst]} ({', '.join(details)})")
        if parts:
            lines.append(f"{language}: " + "; ".join(parts))
    return lines


FORGETTING_VERDICT_NOTE = (
    f"Δ p(correct) in points, 95% interval; forgot = the whole interval below -{FORGETTING_MARGIN:g}, "
    f"not ruled out = it reaches -{FORGETTING_MARGIN:g}, did not forget = it stays above."
)
