"""PNG figures for the UI and the demo: training curves and grouped bar charts (win rates).

matplotlib runs on its non-interactive "Agg" backend, so plotting works without a display (servers, CI,
Dagster workers). Each function writes one PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

# Panels of the training-curve figure, in order; a panel is drawn only when its key was logged
# (SFT logs loss only; DPO also logs the implicit rewards).
CURVE_PANELS: tuple[tuple[str, str], ...] = (
    ("loss", "loss"),
    ("rewards/accuracies", "reward accuracy (chosen > rejected)"),
    ("rewards/margins", "reward margin (chosen − rejected)"),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(log_history: Sequence[dict[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """Plot loss, rewards/accuracies and rewards/margins against the optimizer step.

    ``log_history`` is ``trainer.state.log_history``: one dict per logged step, plus a final summary
    without per-step metrics (ignored here). Missing keys just drop their panel; a history without any
    step gives a figure saying so, so the caller always gets a PNG.
    """
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    series: list[tuple[str, list[float], list[float]]] = []
    for key, label in CURVE_PANELS:
        points = [
            (entry.get("step", i + 1), entry[key])
            for i, entry in enumerate(log_history)
            if isinstance(entry.get(key), (int, float))
        ]
        if points:
            steps, values = zip(*points)
            series.append((label, list(steps), list(values)))

    fig, axes = plt.subplots(1, max(len(series), 1), figsize=(4.2 * max(len(series), 1), 3.4), squeeze=False)
    if not series:
        axes[0][0].text(0.5, 0.5, "no training steps were logged", ha="center", va="center")
        axes[0][0].set_axis_off()
    for ax, (label, steps, values) in zip(axes[0], series):
        ax.plot(steps, values, marker="o" if len(steps) <= 30 else None, markersize=3)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bars(
    table: "pl.DataFrame",
    value_col: str,
    err_col: str | None,
    group_col: str,
    hue_col: str | None,
    path: str | Path,
    title: str = "",
) -> Path:
    """Grouped bar chart: one cluster per ``group_col`` value, one bar per ``hue_col`` value inside it.

    Typical use: win rate (``value_col``) ± standard error (``err_col``) per language (``group_col``) and
    system (``hue_col``, e.g. CroCo mono / multi / SFT). ``err_col`` and ``hue_col`` may be ``None``.
    Win-rate charts get a dashed line at 50 % (parity with the base model).
    """
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for column in (value_col, group_col, err_col, hue_col):
        if column is not None and column not in table.columns:
            raise ValueError(f"plot_bars: no column {column!r} in table with columns {table.columns}")

    groups = list(dict.fromkeys(str(g) for g in table[group_col].to_list()))
    hues = list(dict.fromkeys(str(h) for h in table[hue_col].to_list())) if hue_col else [None]
    lookup: dict[tuple[str, str | None], tuple[float, float]] = {}
    for row in table.iter_rows(named=True):
        key = (str(row[group_col]), str(row[hue_col]) if hue_col else None)
        error = row[err_col] if err_col and row[err_col] is not None else 0.0
        lookup[key] = (float(row[value_col]), float(error))

    width = 0.8 / len(hues)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.0 + 0.9 * len(groups) * max(1, len(hues)) ** 0.5), 3.8))
    for h, hue in enumerate(hues):
        xs, values, errors = [], [], []
        for g, group in enumerate(groups):
            if (group, hue) in lookup:
                value, error = lookup[(group, hue)]
                xs.append(g - 0.4 + width * (h + 0.5))
                values.append(value)
                errors.append(error)
        ax.bar(xs, values, width=width, yerr=errors if err_col else None, capsize=3, label=hue)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_xlabel(group_col)
    ax.set_ylabel(value_col)
    if "win_rate" in value_col:
        ax.axhline(50.0, color="grey", linestyle="--", linewidth=1)
    if hue_col:
        ax.legend(title=hue_col, fontsize=8)
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
