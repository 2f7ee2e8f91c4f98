"""The paper's path end to end, in small: the ``paper`` profile through Dagster with only the models swapped for
tiny ones and the sizes scaled down.

English-only conversations (a dataset folder, as the authors' data arrive) → TranslateGemma-style translation
into Danish, with the authors' length filter → generations → rewards → in-language pairs and cross-language
pairs in the paper's group order → SFT on whole conversations and DPO, the effective batch reached by
accumulation, 1 % held out → evaluation judged with the paper's judge prompt and parser. A tiny judge mostly
writes no verdict: those judgments must be counted, not lost.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance

from croco_pipeline.core.models.lifetime import close_shared_generators
from croco_pipeline.definitions import build_definitions
from croco_pipeline.partitions import language_partitions

pytestmark = pytest.mark.system

LANGUAGES = ["en", "da"]
GROUP = ["da", "en"]  # the paper's high-resource order (da nl en fr de it es), cut to what runs here
CONVERSATIONS = 17  # one of them too long to translate: 16 prompts per language
MIN_STEPS = 3
EFFECTIVE_BATCH = 4  # micro-batch 1 × 4 accumulation steps on this one device


def conversations() -> list[list[dict]]:
    rows = [
        [
            {"role": "user", "content": f"  Explain topic {i}: why does the sky look blue at noon?  "},
            {"role": "assistant", "content": f"Because of scattering, case {i}."},
        ]
        for i in range(CONVERSATIONS - 1)
    ]
    # an assistant turn too long to translate drops the whole conversation, English included
    rows.append([{"role": "user", "content": "Short question?"}, {"role": "assistant", "content": "word " * 600}])
    return rows


def arena_file(path: Path) -> Path:
    """Three m-ArenaHard-format prompts per language (the profile's source is m-ArenaHard, offline here)."""
    rows = [
        {"question_id": f"q{i}", "category": "hard", "subcategory": "s", "prompt": f"Question {i}?", "language": code}
        for code in LANGUAGES
        for i in range(3)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory, tiny_environ, tiny_policy_path):
    import datasets

    root = tmp_path_factory.mktemp("paper")
    folder = root / "english-conversations"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"messages": conversations()})}).save_to_disk(
        str(folder)
    )
    environ = tiny_environ(
        root / "croco_data",
        CROCO_PROFILE="paper",
        CROCO_PROMPT_DATASET=folder,
        CROCO_TRANSLATOR_MODEL=tiny_policy_path,
        CROCO_JUDGE_MODEL=tiny_policy_path,
        CROCO_KEEP_MODELS_LOADED="1",
    )
    definitions = build_definitions(environ=environ)
    # Only sizes and the models' context change; everything else is the paper profile's.
    small = {"max_model_len": None, "dtype": "auto"}
    run_config = {
        "resources": {
            "settings": {
                "config": {
                    "samples_per_prompt": 4,
                    "max_new_tokens": 8,
                    "translation_max_new_tokens": 12,
                    "translation_max_input_tokens": 300,
                    "eval_max_new_tokens": 8,
                    "judge_max_new_tokens": 12,
                    "heldout_source": str(arena_file(root / "arena.jsonl")),
                    "cross_language_languages": GROUP,
                    "training_effective_batch_size": EFFECTIVE_BATCH,
                    "min_optimizer_steps": MIN_STEPS,
                    "multiple_choice": False,
                }
            },
            "policy": {"config": small},
            "translator": {"config": small},
            "judge_model": {"config": small},
        }
    }
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(language_partitions.name, LANGUAGES)
    results = {}
    for language in LANGUAGES:
        results[("croco_job", language)] = definitions.resolve_job_def("croco_job").execute_in_process(
            partition_key=language, instance=instance, run_config=run_config, raise_on_error=False
        )
    results["baselines_job"] = definitions.resolve_job_def("baselines_job").execute_in_process(
        partition_key="da", instance=instance, run_config=run_config, raise_on_error=False
    )
    results["cross_language_job"] = definitions.resolve_job_def("cross_language_job").execute_in_process(
        instance=instance, run_config=run_config, raise_on_error=False
    )
    close_shared_generators()
    return root / "croco_data", results, environ, root


def _table(storage: Path, asset: str, language: str | None = None) -> pl.DataFrame:
    folder = storage / asset / (f"language={language}" if language else "")
    return pl.read_parquet(folder / "data.parquet")


def test_every_job_succeeds(paper_run) -> None:
    _, results, _, _ = paper_run
    failures = {
        str(name): [event.step_failure_data.error.to_string() for event in result.all_events if event.is_step_failure]
        for name, result in results.items()
        if not result.success
    }
    assert failures == {}


def test_english_only_conversations_are_translated_after_the_length_filter(paper_run) -> None:
    storage, _, _, _ = paper_run
    english, danish = _table(storage, "prompts", "en"), _table(storage, "prompts", "da")
    # the over-long conversation left every language; prompts are the first user turns
    assert english.height == CONVERSATIONS - 1
    assert english["prompt"][0].startswith("  Explain topic 0")
    assert danish.height >= 1 and set(danish["language"]) == {"da"}
    assert set(danish["source"]) == {f"machine-translated by {Path(paper_run[2]['CROCO_TRANSLATOR_MODEL'])}"}
    assert set(danish["prompt_id"]) <= set(english["prompt_id"])


def test_cross_language_pairs_pool_the_group_in_the_papers_order(paper_run) -> None:
    storage, _, _, _ = paper_run
    pairs = _table(storage, "cross_language_pairs")
    assert pairs.height >= 1 and pairs["prompt_id"].is_unique().all()
    assert set(pairs["chosen_language"]) | set(pairs["rejected_language"]) <= set(GROUP)
    # texts stripped as the authors' pairing script does
    assert (pairs["prompt"] == pairs["prompt"].str.strip_chars()).all()


def test_every_checkpoint_learned_with_the_papers_schedule(paper_run) -> None:
    import torch
    from safetensors.torch import load_file

    storage, _, _, _ = paper_run
    checkpoints = [
        storage / "checkpoints" / name / f"language={code}"
        for name, code in [("dpo_checkpoint", "en"), ("dpo_checkpoint", "da"), ("sft_checkpoint", "da")]
    ] + [storage / "checkpoints" / name for name in ("multilingual_dpo_checkpoint", "multilingual_sft_checkpoint")]
    for folder in checkpoints:
        manifest = json.loads((folder / "manifest.json").read_text())
        schedule = manifest["schedule"]
        # 1 % held out (at least one example), the effective batch of the run by accumulation
        assert manifest["num_eval_examples"] == 1 == schedule["eval_examples"], folder
        assert schedule["effective_batch"] == EFFECTIVE_BATCH and schedule["accumulation"] == EFFECTIVE_BATCH
        assert manifest["num_steps"] == schedule["optimizer_steps"] >= MIN_STEPS, folder
        assert schedule["steps_that_learn"] >= MIN_STEPS - 1 and schedule["last_learning_rate"] > 0
        logged = [entry["learning_rate"] for entry in manifest["log_history"] if "loss" in entry]
        assert sum(rate > 0 for rate in logged) == schedule["steps_that_learn"]
        # the paper's hyperparameters, untouched
        assert manifest["settings"]["lr_scheduler_type"] == "cosine" and manifest["settings"]["warmup_ratio"] == 0.05
        # the adapter moved away from its initialisation: LoRA starts with B = 0
        weights = load_file(str(folder / "adapter_model.safetensors"))
        lora_b = [tensor for name, tensor in weights.items() if "lora_B" in name]
        assert lora_b and max(float(torch.abs(tensor).max()) for tensor in lora_b) > 0, folder
    sft = json.loads((storage / "checkpoints" / "sft_checkpoint" / "language=da" / "manifest.json").read_text())
    assert sft["settings"]["loss"] == "full_sequence" and sft["settings"]["learning_rate"] == 2e-4
    assert any("eval_loss" in entry for entry in sft["log_history"])  # SFT evaluates its split, DPO does not
    dpo = json.loads((storage / "checkpoints" / "dpo_checkpoint" / "language=da" / "manifest.json").read_text())
    assert not any("eval_loss" in entry for entry in dpo["log_history"])


def test_unparseable_verdicts_are_counted_not_lost(paper_run) -> None:
    storage, _, _, _ = paper_run
    for asset, language in [("evaluation", "en"), ("evaluation", "da"), ("sft_evaluation", "da")]:
        judgments = _table(storage, f"{asset}_judgments", language)
        summary = _table(storage, asset, language).row(0, named=True)
        assert judgments.height == 3  # three held-out prompts, one answer each (the paper's)
        assert summary["n_judged"] + summary["n_unjudged"] == judgments.height
        assert judgments.filter(pl.col("verdict").is_null()).height == summary["n_unjudged"]


def test_croco_plan_with_the_dataset_prints_the_same_schedule(paper_run, croco) -> None:
    storage, _, environ, _ = paper_run
    arguments = [
        "plan", "--languages", "en,da",
        "--set", f"training_effective_batch_size={EFFECTIVE_BATCH}", "--set", f"min_optimizer_steps={MIN_STEPS}",
        "--set", "translation_max_input_tokens=300", "--set", f"cross_language_languages={json.dumps(GROUP)}",
    ]  # fmt: skip
    done = croco(*arguments, env={**environ, "PATH": ""}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"prompts from dataset {environ['CROCO_PROMPT_DATASET']}" in done.stdout
    assert "1 conversations too long to translate, dropped" in done.stdout
    dpo = json.loads((storage / "checkpoints" / "dpo_checkpoint" / "language=en" / "manifest.json").read_text())
    row = next(
        line for line in done.stdout.splitlines() if line.strip().startswith("dpo_checkpoint") and " en " in line
    )
    cells = row.split()
    assert cells[2] == str(dpo["schedule"]["examples"]) and cells[6] == str(dpo["num_steps"])
    assert "GPU-hours" in done.stdout
