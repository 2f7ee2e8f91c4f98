"""Rounds of CroCo (iterative, on-policy): round k samples from the model that round k−1 trained.

Round 0 is the chain as it always was (``generations`` → … → ``dpo_checkpoint``). Round k ≥ 1 has its own
assets, named ``round<k>_<stage>``: ``round<k>_policy`` (round k−1's adapter merged into its base, a plain
model folder), then ``round<k>_generations`` sampled from that model, ``round<k>_reward_scores``,
``round<k>_preference_pairs``, ``round<k>_dpo_checkpoint`` and ``round<k>_evaluation`` (against the
base model's answers of round 0). ``docs/design.md`` argues for names over a second partition dimension.

Which checkpoint of round k−1 a round samples from is part of the graph (``CROCO_ROUND_POLICY``):

- ``language`` (the default): each language's own checkpoint, ``dpo_checkpoint`` of that language; the
  round's assets are per language, as above.
- ``multilingual``: the one multilingual checkpoint (``multilingual_dpo_checkpoint`` in round 0), merged once
  (``round<k>_multilingual_policy``) and sampled in every language; the round pools the languages' samples
  into cross-language pairs (``round<k>_cross_language_pairs``) and trains one multilingual checkpoint again
  (``round<k>_multilingual_dpo_checkpoint``), evaluated per language. Both chains can live in one graph.

Two settings say what a later round trains (``RunSettings.round_init`` and ``round_reference``):

- ``round_init``: ``base`` trains a fresh adapter on the initial model (each round's model is the base plus
  its own adapter); ``previous`` trains it on the previous round's merged model (the rounds stack).
- ``round_reference``: the DPO reference is the ``initial`` model or the ``previous`` round's model. When the
  reference is the model the adapter is trained on, it is that model with the adapter disabled (no second
  copy in memory); otherwise it is loaded beside it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

RoundInit = Literal["base", "previous"]
RoundReference = Literal["initial", "previous"]
RoundPolicy = Literal["language", "multilingual"]
ROUND_POLICIES: tuple[RoundPolicy, ...] = ("language", "multilingual")

_ROUND_NAME = re.compile(r"^round(\d+)_")


def round_asset(name: str, round_index: int) -> str:
    """The name of stage ``name`` in round ``round_index``: itself in round 0, ``round<k>_<name>`` after."""
    if round_index < 0:
        raise ValueError(f"rounds count from 0, got {round_index}")
    return name if round_index == 0 else f"round{round_index}_{name}"


def round_of(asset_name: str) -> int:
    """The round an asset belongs to (0 unless its name starts with ``round<k>_``)."""
    match = _ROUND_NAME.match(asset_name)
    return int(match.group(1)) if match else 0


def round_group(round_index: int, policy: RoundPolicy = "language") -> str:
    if policy == "multilingual":
        return "cross_language" if round_index == 0 else f"croco_round{round_index}_multilingual"
    return "croco" if round_index == 0 else f"croco_round{round_index}"


def round_job(round_index: int) -> str:
    return "croco_job" if round_index == 0 else f"round{round_index}_job"


def multilingual_round_jobs(round_index: int) -> dict[str, str]:
    """The jobs of a multilingual round k ≥ 1, in order: sampling (per language, or one run over every
    language as a backfill), training (once, every language pooled), evaluation (per language)."""
    prefix = f"round{round_index}_multilingual"
    return {phase: f"{prefix}_{phase}_job" for phase in ("sampling", "training", "evaluation")}


def round_system(round_index: int, policy: RoundPolicy = "language") -> str:
    """The system name a round's checkpoint has in evaluation rows and the report."""
    if policy == "multilingual":
        return "croco_multilingual" if round_index == 0 else f"croco_multilingual_round{round_index}"
    return "croco_monolingual" if round_index == 0 else f"croco_round{round_index}"


def round_checkpoint(round_index: int, policy: RoundPolicy = "language") -> str:
    """The DPO checkpoint a round trains: its language's, or the one multilingual checkpoint."""
    return round_asset("dpo_checkpoint" if policy == "language" else "multilingual_dpo_checkpoint", round_index)


def round_evaluation(round_index: int, policy: RoundPolicy = "language") -> str:
    return round_asset("evaluation" if policy == "language" else "multilingual_evaluation", round_index)


def round_pairs(round_index: int, policy: RoundPolicy = "language") -> str:
    return round_asset("preference_pairs" if policy == "language" else "cross_language_pairs", round_index)


def parse_round_policies(value: str | None) -> tuple[RoundPolicy, ...]:
    """``CROCO_ROUND_POLICY``: ``language`` (default), ``multilingual`` or both, comma-separated."""
    names = [name.strip() for name in (value or "language").split(",") if name.strip()]
    unknown = [name for name in names if name not in ROUND_POLICIES]
    if unknown or not names:
        raise ValueError(f"round policies are {' or '.join(ROUND_POLICIES)} (comma-separated for both), got {value!r}")
    return tuple(policy for policy in ROUND_POLICIES if policy in names)


@dataclass(frozen=True)
class RoundModels:
    """What a round's DPO trains: the adapter goes on ``train_base``; ``reference`` is the DPO reference
    when it is another model (None: ``train_base`` with the adapter disabled)."""

    train_base: str
    reference: str | None


def round_models(initial_model: str, previous_model: str | None, init: str, reference: str) -> RoundModels:
    """The models of a round from the settings; ``previous_model`` is round k−1's merged model (None in round 0)."""
    if init not in ("base", "previous"):
        raise ValueError(f"settings.round_init must be 'base' or 'previous', got {init!r}")
    if reference not in ("initial", "previous"):
        raise ValueError(f"settings.round_reference must be 'initial' or 'previous', got {reference!r}")
    if previous_model is None:  # round 0: the base, referenced by itself
        return RoundModels(initial_model, None)
    train_base = initial_model if init == "base" else previous_model
    wanted = initial_model if reference == "initial" else previous_model
    return RoundModels(train_base, None if wanted == train_base else wanted)


def adapter_base(adapter_dir: str | Path) -> str:
    """The base model a LoRA adapter folder was trained on (``adapter_config.json``)."""
    config = Path(adapter_dir) / "adapter_config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{adapter_dir} holds no LoRA adapter (adapter_config.json is missing)")
    return json.loads(config.read_text())["base_model_name_or_path"]


ROUNDS_COLUMNS = [
    "language",
    "round_policy",
    "round",
    "system",
    "win_rate",
    "standard_error",
    "lc_win_rate",
    "tuned_mean_reward",
    "tuned_language_share",
    "tuned_language_share_independent",
    "n_judged",
]
RoundKey = tuple[RoundPolicy, int]


_KEY_COLUMNS = ("round_policy", "round")


def _key_columns(policy: str, round_index: int) -> list[pl.Expr]:
    return [pl.lit(policy, dtype=pl.String).alias("round_policy"), pl.lit(round_index, dtype=pl.Int32).alias("round")]


def rounds_table(
    evaluations: dict[RoundKey, pl.DataFrame], pairs: dict[RoundKey, pl.DataFrame] | None = None
) -> pl.DataFrame:
    """One row per (language, round policy, round): each round's checkpoint against the base model, plus the
    round's pair count in that language (pairs whose prompt is in it) when ``pairs`` are given.
    Both are keyed by (round policy, round): ``("language", 1)`` is round 1 of the per-language chain."""
    frames = []
    for (policy, round_index), frame in sorted(evaluations.items()):
        if frame.is_empty():
            continue
        present = [column for column in ROUNDS_COLUMNS if column in frame.columns and column not in _KEY_COLUMNS]
        part = frame.select(present).with_columns(_key_columns(policy, round_index))
        counted = (pairs or {}).get((policy, round_index))
        if counted is not None and counted.height:
            # a language the round's pairs hold none of (pooled pairs chose other languages) counts 0
            per_language = counted.filter(pl.col("language").is_not_null()).group_by("language").len("pairs")
            part = part.join(per_language, on="language", how="left").with_columns(pl.col("pairs").fill_null(0))
        frames.append(part)
    if not frames:
        return pl.DataFrame(schema={"language": pl.String, "round_policy": pl.String, "round": pl.Int32})
    table = pl.concat(frames, how="diagonal_relaxed")
    if pairs is not None and "pairs" not in table.columns:  # asked for, none known yet
        table = table.with_columns(pl.lit(None, dtype=pl.UInt32).alias("pairs"))
    ordered = [column for column in [*ROUNDS_COLUMNS, "pairs"] if column in table.columns]
    return table.select(ordered).sort("language", "round_policy", "round")


def plot_rounds(table: pl.DataFrame, path: Path) -> Path | None:
    """Win rate against the base model by round, one line per language (None when nothing is judged)."""
    judged = table.filter(pl.col("win_rate").is_not_null()) if "win_rate" in table.columns else table.clear()
    if judged.is_empty():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    both = judged["round_policy"].n_unique() > 1 if "round_policy" in judged.columns else False
    keys = ["language", "round_policy"] if both else ["language"]
    for key, part in judged.sort("round").group_by(keys, maintain_order=True):
        label = f"{key[0]} ({key[1]})" if both else key[0]
        axis.plot(
            part["round"].to_list(),
            part["win_rate"].to_list(),
            marker="o",
            label=label,
            linestyle="--" if both and key[1] == "multilingual" else "-",
        )
    axis.axhline(50, color="grey", linestyle="--", linewidth=1)
    axis.set_xlabel("round")
    axis.set_ylabel("win rate over the base model (%)")
    axis.set_xticks(sorted(set(judged["round"].to_list())))
    axis.legend(title="language (round policy)" if both else "language")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
