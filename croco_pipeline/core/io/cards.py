"""Cards that say how a dataset or an adapter was made: Hugging Face ``README.md`` files with YAML metadata.

- :func:`write_model_card`: the card of a trained adapter folder, from its manifest (base model, data
  asset and partition, hyperparameters, tracker run, final training metrics). The evaluation section is
  a placeholder until :func:`add_evaluation` fills it with the system's evaluation row.
- :func:`dataset_card`: the card of an exported pair dataset (languages, row counts, pairing rule and
  target, policy and reward models, prompt source, Dagster run ids).

Both are plain Markdown that ``huggingface_hub`` pushes with the folder (README.md is the Hub's card).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CARD_NAME = "README.md"
EVALUATION_START = "<!-- croco:evaluation -->"
EVALUATION_END = "<!-- /croco:evaluation -->"
NO_EVALUATION = "Not evaluated yet: this section is filled in when the evaluation asset of this checkpoint runs."

PAIRING_RULE = (
    "Per prompt, chosen = the sample with the highest reward; rejected = the sample whose reward is closest "
    "to the target and strictly below the chosen one's (Xiao et al., 2025; Zhang, Basirat & Elliott, 2026)."
)
TARGETS = {
    "mean_minus_2sigma": "mean − 2·std of the prompt's rewards (population std)",
    "q1": "the 25th percentile of the prompt's rewards",
    "min": "the lowest reward of the prompt",
}


def _is_hub_id(name: str | None) -> bool:
    """A Hugging Face id (``org/name``), not a local folder: only ids go into the card's YAML."""
    if not name or os.path.isabs(name) or name.startswith((".", "~")) or Path(name).exists():
        return False
    return name.count("/") == 1


def _yaml(metadata: Mapping[str, Any]) -> str:
    lines = ["---"]
    for key, value in metadata.items():
        if isinstance(value, (list, tuple)):
            lines.append(f"{key}:")
            lines.extend(f"- {json.dumps(item)}" for item in value)
        else:
            lines.append(f"{key}: {json.dumps(value)}")
    return "\n".join(lines + ["---", ""])


def _table(rows: Mapping[str, Any]) -> str:
    lines = ["| | |", "|---|---|"]
    for key, value in rows.items():
        text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        text = text.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {key} | {text} |")
    return "\n".join(lines)


def model_card(manifest: Mapping[str, Any]) -> str:
    """The Markdown model card of an adapter, from its training manifest."""
    kind = str(manifest.get("kind", "dpo"))
    policy = manifest.get("policy") or manifest.get("base_model")
    language = manifest.get("language")
    metadata: dict[str, Any] = {"library_name": "peft", "tags": ["croco", kind, "lora", "trl"]}
    if _is_hub_id(policy):
        metadata["base_model"] = policy
    if language:
        metadata["language"] = [language]
    settings = dict(manifest.get("settings") or {})
    lora = settings.pop("lora", {})
    tracking = manifest.get("tracking") or {"tracker": "none"}
    final = {k: v for k, v in (manifest.get("final_metrics") or {}).items() if isinstance(v, (int, float))}
    method = (
        "DPO (TRL `DPOTrainer`, reference = the base model with the adapter switched off)"
        if kind == "dpo"
        else "SFT on the best-of-N samples (TRL `SFTTrainer`)"
    )
    parts = [
        _yaml(metadata),
        f"# CroCo {kind.upper()} LoRA adapter" + (f" ({language})" if language else " (all languages)"),
        "",
        f"A LoRA adapter trained with {method} by the croco pipeline (cross-lingual preference tuning on "
        "self-generations).",
        "",
        "## How it was made",
        "",
        _table(
            {
                "base model": policy,
                "base model as loaded": manifest.get("base_model"),
                "data asset": manifest.get("data_asset"),
                "data partition": language or "(all languages)",
                "training examples": manifest.get("num_examples"),
                "optimizer steps": manifest.get("num_steps"),
                "device": manifest.get("device"),
                "Dagster run": manifest.get("dagster_run_id"),
                "tracker": tracking.get("tracker"),
                "tracker project": tracking.get("project"),
                "tracker run": tracking.get("run"),
                "created": manifest.get("created_at"),
            }
        ),
        "",
        "## Hyperparameters",
        "",
        _table({**settings, **{f"lora.{key}": value for key, value in lora.items()}}),
        "",
        "## Training results (last logged step)",
        "",
        _table(final) if final else "(none logged)",
        "",
        "## Evaluation",
        "",
        EVALUATION_START,
        NO_EVALUATION,
        EVALUATION_END,
        "",
        "## Versions",
        "",
        _table(manifest.get("versions") or {}),
        "",
    ]
    return "\n".join(parts)


def write_model_card(folder: str | Path, manifest: Mapping[str, Any]) -> Path:
    path = Path(folder) / CARD_NAME
    path.write_text(model_card(manifest))
    return path


def with_evaluation(card: str, evaluation: Mapping[str, Any], *, dagster_run_id: str | None = None) -> str:
    """``card`` with its evaluation section replaced by ``evaluation`` (one system's summary row)."""
    start, end = card.find(EVALUATION_START), card.find(EVALUATION_END)
    if start < 0 or end < start:
        raise ValueError(f"the card has no evaluation section ({EVALUATION_START} … {EVALUATION_END})")
    rows = {key: value for key, value in evaluation.items() if value is not None}
    if dagster_run_id:
        rows["Dagster run"] = dagster_run_id
    body = "Against the base model's own answers on held-out prompts (win rate in %, ties count 0.5):\n\n" + _table(
        rows
    )
    return card[: start + len(EVALUATION_START)] + "\n" + body + "\n" + card[end:]


def add_evaluation(
    checkpoint: str,
    evaluation: Mapping[str, Any],
    storage_options: dict | None = None,
    *,
    dagster_run_id: str | None = None,
) -> str | None:
    """Fill the evaluation section of the card in ``checkpoint`` (a local folder or an s3:// prefix).

    Returns the card's path, or None for a checkpoint trained before cards existed (it has none)."""
    from croco_pipeline.core.io import atomic, storage

    path = storage.join(checkpoint, CARD_NAME)
    fs = storage.filesystem(path, storage_options)
    with storage.explain_errors(path, storage_options, "updating the model card"):
        if not fs.exists(path):
            return None
        card = fs.cat_file(path).decode()
        updated = with_evaluation(card, evaluation, dagster_run_id=dagster_run_id)
    atomic.write_bytes(path, updated.encode(), storage_options)
    return path


def dataset_card(
    *,
    table: str,
    languages: Mapping[str, int],
    target: list[str],
    policy_models: list[str],
    reward_models: list[str],
    prompt_sets: list[str],
    prompt_source: str,
    dagster_runs: Mapping[str, str],
    where: str | None = None,
) -> str:
    """The Markdown card of an exported pair dataset (``croco export --format hf``)."""
    total = sum(languages.values())
    metadata: dict[str, Any] = {
        "language": sorted(languages),
        "tags": ["croco", "dpo", "preference", "trl"],
        "task_categories": ["text-generation"],
        "size_categories": [_size_category(total)],
    }
    count_rows = [f"| {language} | {rows} |" for language, rows in sorted(languages.items())]
    counts = "\n".join(["| language | pairs |", "|---|---|"] + count_rows)
    run_rows = [f"| {partition} | {run} |" for partition, run in sorted(dagster_runs.items())]
    runs = (
        "\n".join(["| partition | Dagster run |", "|---|---|"] + run_rows)
        if dagster_runs
        else "(not recorded: no Dagster instance was found, set DAGSTER_HOME)"
    )
    parts = [
        _yaml(metadata),
        f"# CroCo preference pairs ({table})",
        "",
        f"{total} preference pairs in TRL's conversational format (`prompt`, `chosen`, `rejected` message lists), "
        "built by the croco pipeline from the policy's own samples, scored by a reward model.",
        "",
        "## How it was made",
        "",
        _table(
            {
                "pair table": table,
                "selection": where or "(all rows)",
                "pairing rule": PAIRING_RULE,
                "pairing target": "; ".join(f"`{t}`: {TARGETS.get(t, t)}" for t in target) or "unknown",
                "policy model (samples)": ", ".join(policy_models) or "unknown",
                "reward model (scores)": ", ".join(reward_models) or "unknown",
                "prompt set": ", ".join(prompt_sets) or "unknown",
                "prompt source": prompt_source,
            }
        ),
        "",
        "## Rows per language",
        "",
        counts,
        "",
        "## Dagster runs that materialised the pairs",
        "",
        runs,
        "",
        "## Loading",
        "",
        "```python",
        "import datasets",
        'pairs = datasets.load_from_disk("<this folder>")  # or load_dataset("<hub id>") once pushed',
        "```",
        "",
    ]
    return "\n".join(parts)


def _size_category(rows: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return label
    return "n>1M"
