"""Real (tiny) LoRA training runs with TRL: DPO, SFT, the output folder and merging.

Each run trains a 2-layer model for 2 steps on CPU, so the whole module takes well under a minute.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import polars as pl
import pytest

from croco_pipeline.core.models.adapters import merge_adapter
from croco_pipeline.core.training.config import DPOSettings, SFTSettings
from croco_pipeline.core.training.trainer import (
    CURVES_NAME,
    MANIFEST_NAME,
    _lora_config,
    eval_size,
    load_manifest,
    train_dpo,
    train_sft,
    training_arguments,
)
from croco_pipeline.resources.settings import PipelineSettings


@pytest.fixture(scope="module")
def base_model(tiny_policy_path: Path) -> str:
    """The shared tiny chat policy (tests/conftest.py)."""
    return str(tiny_policy_path)


def _pairs(n: int = 8) -> pl.DataFrame:
    prompts = [f"Question {i}: what is the capital of country number {i}?" for i in range(n)]
    return pl.DataFrame(
        {
            "prompt": prompts,
            "chosen": [f"The capital is city {i}. It is a large and old city." for i in range(n)],
            "rejected": [f"I do not know {i}." for i in range(n)],
        }
    )


def _tiny(settings_cls, **overrides):
    """The embedded (CPU) settings, cut to 2 optimizer steps on a small LoRA."""
    from croco_pipeline.core.training.config import LoraSettings

    tiny = dict(max_steps=2, max_length=128, lora=LoraSettings(r=4, alpha=8))
    return dataclasses.replace(settings_cls.embedded(), **{**tiny, **overrides})


@pytest.fixture(scope="module")
def dpo_run(base_model: str, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("dpo") / "adapter"
    started = time.perf_counter()
    result = train_dpo(base_model, _pairs(), out, _tiny(DPOSettings), manifest_extra={"language": "da"})
    return result, time.perf_counter() - started


def test_settings_defaults_are_the_papers() -> None:
    dpo = DPOSettings()
    assert (dpo.beta, dpo.loss_type, dpo.learning_rate, dpo.lr_scheduler_type) == (0.1, "sigmoid", 5e-6, "cosine")
    assert (dpo.per_device_train_batch_size, dpo.gradient_accumulation_steps, dpo.max_length) == (1, 8, 4096)
    assert (dpo.lora.r, dpo.lora.alpha, dpo.lora.dropout) == (16, 32, 0.05)
    assert len(dpo.lora.target_modules) == 7
    assert SFTSettings().learning_rate == 2e-4
    embedded = DPOSettings.embedded()
    assert embedded.precompute_ref_log_probs and not embedded.bf16 and not embedded.gradient_checkpointing
    assert embedded.max_length == 384 and dpo.lora.top_layers is None  # the paper adapts every layer
    # the laptop recipe that learns in 16 steps (benchmarks/training_recipe.py measured it)
    assert (embedded.learning_rate, embedded.num_train_epochs, embedded.per_device_train_batch_size) == (1e-3, 2, 2)
    # the laptop run keeps the paper's LoRA shape but adapts only the top layers (cheaper backward pass)
    assert dataclasses.replace(embedded.lora, top_layers=None) == dpo.lora and embedded.lora.top_layers == 16
    assert _lora_config(embedded.lora, num_layers=30).layers_to_transform == list(range(14, 30))
    assert _lora_config(embedded.lora, num_layers=2).layers_to_transform == [0, 1]
    assert _lora_config(dpo.lora, num_layers=30).layers_to_transform is None
    json.dumps(embedded.as_dict())  # settings go into the manifest


def test_the_paper_profile_hands_trl_an_effective_batch_of_64_seed_42_and_an_eval_split() -> None:
    from trl import DPOConfig, SFTConfig

    settings = PipelineSettings(training="paper", seed=42)  # as the paper profile sets them
    dpo = settings.dpo_settings()
    one_gpu = training_arguments(dpo, on_cuda=True, devices=1)
    assert (one_gpu["per_device_train_batch_size"], one_gpu["gradient_accumulation_steps"]) == (1, 64)
    assert (one_gpu["seed"], one_gpu["data_seed"], one_gpu["bf16"]) == (42, 42, True)
    assert (one_gpu["learning_rate"], one_gpu["lr_scheduler_type"], one_gpu["warmup_steps"]) == (5e-6, "cosine", 0.05)
    # the authors hold 1 % out in both trainers and evaluate it in SFT only, at each epoch's end
    assert one_gpu["eval_strategy"] == "no" and dpo.eval_fraction == 0.01
    assert training_arguments(settings.sft_settings(), on_cuda=True, devices=1)["eval_strategy"] == "epoch"
    eight_gpus = training_arguments(dpo, on_cuda=True, devices=8)
    assert eight_gpus["gradient_accumulation_steps"] == 8  # the paper's 1 × 8 on 8 GPUs
    with pytest.raises(ValueError, match="not a multiple"):
        training_arguments(dpo, on_cuda=True, devices=3)
    # TRL takes them as they are (a CPU build here: no bf16)
    config = DPOConfig(output_dir="unused", **training_arguments(dpo, on_cuda=False, devices=1))
    assert (config.gradient_accumulation_steps, config.seed, config.eval_strategy) == (64, 42, "no")
    sft = training_arguments(settings.sft_settings(), on_cuda=False, devices=1)
    assert SFTConfig(output_dir="unused", **sft).learning_rate == 2e-4 and sft["gradient_accumulation_steps"] == 64
    # 1 % of the data is held out: at least one example, never all of them
    assert [eval_size(n, 0.01) for n in (1, 2, 100, 101, 2232)] == [0, 1, 1, 2, 23]
    assert training_arguments(dpo, on_cuda=True, devices=1, evaluate=False)["eval_strategy"] == "no"
    # the laptop and test presets keep micro-batch 2 without accumulation or an eval split
    for profile in ("embedded", "tiny"):
        laptop = training_arguments(PipelineSettings(training=profile).dpo_settings(), on_cuda=False, devices=1)
        assert (laptop["per_device_train_batch_size"], laptop["gradient_accumulation_steps"]) == (2, 1)
        assert (laptop["eval_strategy"], laptop["seed"]) == ("no", 0)


def test_dpo_writes_a_complete_folder(dpo_run) -> None:
    result, _ = dpo_run
    out = result.output_dir
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", MANIFEST_NAME, CURVES_NAME} <= names
    assert "tokenizer.json" in names or "tokenizer_config.json" in names
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".adapter.")] == []  # temp folder gone
    assert (out / CURVES_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4 and adapter_config["peft_type"] == "LORA"


def test_dpo_logs_loss_and_reward_margins(dpo_run) -> None:
    result, _ = dpo_run
    steps = [entry for entry in result.log_history if "loss" in entry]
    assert len(steps) == 2  # max_steps 2, logging every step
    assert all("rewards/margins" in e and "rewards/accuracies" in e for e in steps)
    # Before the first update the adapter is zero, so policy = reference and the loss is -log σ(0) = ln 2.
    assert steps[0]["loss"] == pytest.approx(0.6931, abs=1e-3)
    assert result.num_examples == 8
    assert result.train_seconds > 0
    assert "train_runtime" in result.final_metrics and "rewards/margins" in result.final_metrics


def test_dpo_manifest(dpo_run, base_model: str) -> None:
    result, _ = dpo_run
    manifest = load_manifest(result.output_dir)
    assert manifest == load_manifest(result.output_dir / MANIFEST_NAME)
    assert manifest["kind"] == "dpo"
    assert manifest["base_model"] == base_model
    assert manifest["num_examples"] == 8 and manifest["num_steps"] == 2
    assert manifest["settings"]["beta"] == 0.1 and manifest["settings"]["lora"]["r"] == 4
    assert set(manifest["versions"]) >= {"trl", "peft", "transformers"}
    assert manifest["language"] == "da"  # manifest_extra
    assert manifest["log_history"] == result.log_history
    assert manifest["created_at"]


def test_trained_adapter_loads_and_generates(dpo_run) -> None:
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    result, _ = dpo_run
    model = AutoPeftModelForCausalLM.from_pretrained(str(result.output_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(result.output_dir))
    # LoRA B starts at zero; two DPO steps must have moved it.
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert output.shape[1] > inputs["input_ids"].shape[1]


def test_rerun_replaces_the_output_folder(base_model: str, tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    train_dpo(base_model, _pairs(4), out, _tiny(DPOSettings, max_steps=1), manifest_extra={"run": 2})
    assert not (out / "stale.txt").exists()
    assert load_manifest(out)["run"] == 2 and load_manifest(out)["num_examples"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]  # no temp or old folders left behind


def test_failed_run_keeps_the_previous_folder(base_model: str, tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "keep.txt").write_text("previous good run")
    # The model loads, then TRL rejects the loss type inside the temporary folder.
    with pytest.raises(ValueError, match="no-such-loss"):
        train_dpo(base_model, _pairs(2), out, _tiny(DPOSettings, loss_type="no-such-loss"))
    assert (out / "keep.txt").read_text() == "previous good run"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]  # temporary folder removed


def test_missing_base_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-model.*does not exist"):
        train_dpo(str(tmp_path / "no-such-model"), _pairs(2), tmp_path / "out", _tiny(DPOSettings))
    assert not (tmp_path / "out").exists()


def test_empty_pairs_is_a_clear_error(base_model: str, tmp_path: Path) -> None:
    empty = _pairs(0)
    with pytest.raises(ValueError, match="no preference pairs for .*nothing to train"):
        train_dpo(base_model, empty, tmp_path / "out", _tiny(DPOSettings))
    assert not (tmp_path / "out").exists()


def test_missing_columns_is_a_clear_error(base_model: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rejected"):
        train_dpo(base_model, _pairs().drop("rejected"), tmp_path / "out", _tiny(DPOSettings))


def test_sft_run(base_model: str, tmp_path: Path) -> None:
    records = _pairs().select("prompt", pl.col("chosen").alias("response"))
    result = train_sft(base_model, records, tmp_path / "sft", _tiny(SFTSettings))
    names = {p.name for p in result.output_dir.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", MANIFEST_NAME, CURVES_NAME} <= names
    steps = [entry for entry in result.log_history if "loss" in entry]
    assert len(steps) == 2 and all(e["loss"] > 0 for e in steps)
    manifest = load_manifest(result.output_dir)
    assert manifest["kind"] == "sft" and manifest["settings"]["learning_rate"] == SFTSettings.embedded().learning_rate
    with pytest.raises(ValueError, match="no SFT records"):
        train_sft(base_model, records.head(0), tmp_path / "sft2", _tiny(SFTSettings))


def test_an_eval_split_is_held_out_and_evaluated_as_the_authors_did(base_model: str, tmp_path: Path) -> None:
    # 8 examples, 25 % held out: 6 train in 3 steps of 2; SFT evaluates the other 2 at the epoch's end
    records = _pairs().select("prompt", pl.col("chosen").alias("response"))
    settings = _tiny(SFTSettings, max_steps=-1, num_train_epochs=1.0, eval_fraction=0.25)
    result = train_sft(base_model, records, tmp_path / "sft", settings)
    manifest = load_manifest(result.output_dir)
    assert (manifest["num_examples"], manifest["num_eval_examples"], manifest["num_steps"]) == (8, 2, 3)
    evaluations = [entry for entry in result.log_history if "eval_loss" in entry]
    assert len(evaluations) == 1 and evaluations[0]["eval_loss"] > 0
    # DPO holds the split out too, but never evaluates it (the authors' eval strategy "no")
    dpo = train_dpo(base_model, _pairs(), tmp_path / "dpo", _tiny(DPOSettings, max_steps=-1, eval_fraction=0.25))
    dpo_manifest = load_manifest(dpo.output_dir)
    assert (dpo_manifest["num_eval_examples"], dpo_manifest["num_steps"]) == (2, 6)  # 2 epochs of 3 steps
    assert not [entry for entry in dpo.log_history if "eval_loss" in entry]
    # a single example leaves nothing to hold out: it trains without an eval split instead of failing
    alone = train_sft(base_model, records.head(1), tmp_path / "sft1", settings)
    assert load_manifest(alone.output_dir)["num_eval_examples"] == 0


def test_the_planned_schedule_is_the_one_trl_runs(base_model: str, tmp_path: Path) -> None:
    """croco's preflight counts steps, warmup and learning rates as transformers does, accumulation, an
    eval split and a short last accumulation step included."""
    from croco_pipeline.core.training.schedule import plan_training

    # 11 examples, 1 held out, micro-batch 2 → 5 batches; accumulation 2 → 3 steps per epoch (the last of one
    # batch); 2 epochs → 6 steps; warmup ceil(0.3 × 6) = 2; cosine from 1e-3
    settings = _tiny(
        DPOSettings,
        max_steps=-1,
        num_train_epochs=2.0,
        eval_fraction=0.05,
        gradient_accumulation_steps=2,
        warmup_ratio=0.3,
        learning_rate=1e-3,
    )
    plan = plan_training(settings, 11)
    assert (plan.eval_examples, plan.effective_batch, plan.steps_per_epoch, plan.optimizer_steps) == (1, 4, 3, 6)
    assert plan.warmup_steps == 2 and plan.first_learning_rate == 0.0 and plan.steps_that_learn == 5
    result = train_dpo(base_model, _pairs(11), tmp_path / "dpo", settings)
    manifest = load_manifest(result.output_dir)
    assert manifest["num_steps"] == plan.optimizer_steps == manifest["schedule"]["optimizer_steps"]
    # transformers logs the rate each step ran at: the planned ones, the first at 0 (warmup)
    logged = [entry["learning_rate"] for entry in result.log_history if "loss" in entry]
    assert logged == pytest.approx(list(plan.learning_rates))


def test_merge_adapter_gives_a_plain_model(dpo_run, tmp_path: Path) -> None:
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result, _ = dpo_run
    merged_dir = merge_adapter(result.output_dir, tmp_path / "merged")
    assert not (merged_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
    # The merged model computes what base + adapter computes.
    ids = tokenizer("The capital is", return_tensors="pt")["input_ids"]
    with_adapter = AutoPeftModelForCausalLM.from_pretrained(str(result.output_dir))
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, with_adapter(ids).logits, atol=1e-4)
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        merge_adapter(tmp_path, tmp_path / "merged2")


def test_report_step_time(dpo_run) -> None:
    """Not an assertion about speed: records the wall time of a tiny DPO run in the test output."""
    result, wall = dpo_run
    per_step = result.final_metrics["train_runtime"] / 2
    print(f"\ntiny DPO: {wall:.1f} s in train_dpo, {per_step:.2f} s per optimizer step")
    assert per_step > 0


def test_training_curves_panels_follow_the_logged_keys(tmp_path: Path) -> None:
    import matplotlib.image

    from croco_pipeline.core.io.plots import plot_training_curves

    dpo_log = [
        {"step": s, "loss": 0.7 - 0.1 * s, "rewards/accuracies": 0.5, "rewards/margins": 0.1 * s} for s in (1, 2, 3)
    ]
    sft_log = [{"step": s, "loss": 3.0 - s} for s in (1, 2, 3)] + [{"step": 3, "train_runtime": 1.0}]
    dpo_png = plot_training_curves(dpo_log, tmp_path / "dpo.png")
    sft_png = plot_training_curves(sft_log, tmp_path / "sft.png")
    empty_png = plot_training_curves([], tmp_path / "empty.png")
    # One panel per logged metric: three for DPO, one (loss) for SFT, so the DPO figure is ~3x wider.
    dpo_width = matplotlib.image.imread(dpo_png).shape[1]
    sft_width = matplotlib.image.imread(sft_png).shape[1]
    assert dpo_width == pytest.approx(3 * sft_width, rel=0.05)
    assert empty_png.stat().st_size > 0


# ----------------------------------------------------------------------------- CPU shortcuts (exact)


@pytest.fixture(scope="module")
def four_layer_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random 4-layer chat Llama, so that LoRA on the top 2 leaves 2 frozen layers below."""
    import torch
    from tiny_models import _llama_config, _tokenizer
    from transformers import LlamaForCausalLM

    path = tmp_path_factory.mktemp("models") / "four-layers"
    tokenizer = _tokenizer()
    torch.manual_seed(0)
    LlamaForCausalLM(_llama_config(tokenizer, num_hidden_layers=4)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_cpu_shortcuts_change_no_number_and_skip_the_frozen_layers(
    four_layer_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Scoring completion tokens only and caching the frozen layers' output give the same losses and
    the same adapter as TRL's own path; after the reference pass every training row is served from memory."""
    import contextlib
    import logging

    from safetensors.torch import load_file

    from croco_pipeline.core.training import trainer
    from croco_pipeline.core.training.config import LoraSettings

    settings = _tiny(DPOSettings, max_steps=3, lora=LoraSettings(r=4, alpha=8, top_layers=2))
    with caplog.at_level(logging.INFO, logger="croco_pipeline.core.training.cpu_shortcuts"):
        fast = train_dpo(four_layer_model, _pairs(), tmp_path / "fast", settings)
    monkeypatch.setattr(trainer, "_cpu_shortcuts", lambda *args: contextlib.nullcontext())
    plain = train_dpo(four_layer_model, _pairs(), tmp_path / "plain", settings)

    losses = [[entry["loss"] for entry in run.log_history if "loss" in entry] for run in (fast, plain)]
    assert len(losses[0]) == 3
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)
    fast_weights = load_file(tmp_path / "fast" / "adapter_model.safetensors")
    plain_weights = load_file(tmp_path / "plain" / "adapter_model.safetensors")
    assert fast_weights.keys() == plain_weights.keys()
    assert all(".layers.2." in key or ".layers.3." in key for key in fast_weights)  # the top 2 only
    for key, value in fast_weights.items():
        assert value.allclose(plain_weights[key], atol=1e-5), key
    # The reference pass computed all 16 rows (8 pairs × chosen/rejected); 3 steps of 2 pairs reused 12.
    assert "frozen layers 0-1: 12 rows served from memory, 16 computed, 0 forward calls bypassed" in caplog.text


def test_frozen_layer_cache_runs_left_padded_batches_as_usual() -> None:
    """Only right-padded rows are cached: a left-padded batch runs the layers (and is counted)."""
    import torch

    from croco_pipeline.core.training.cpu_shortcuts import FrozenLayerCache

    cache = FrozenLayerCache()
    layers = [lambda hidden, **kwargs: hidden * 2, lambda hidden, **kwargs: hidden + 1]
    hidden = torch.ones(2, 3, 4)
    ids = torch.tensor([[0, 5, 6], [7, 8, 9]])
    cache.begin_forward(ids, torch.tensor([[0, 1, 1], [1, 1, 1]]), None)
    assert torch.equal(cache.run(layers, hidden, {}), hidden * 2 + 1)
    assert (cache.bypassed, cache.misses, cache.hits) == (1, 0, 0)

    right_padded = torch.tensor([[1, 1, 0], [1, 1, 1]])
    for _ in range(2):
        cache.begin_forward(ids, right_padded, None)
        out = cache.run(layers, hidden, {})
        assert torch.equal(out[1], torch.full((3, 4), 3.0)) and torch.equal(out[0, :2], torch.full((2, 4), 3.0))
    assert (cache.bypassed, cache.misses, cache.hits) == (1, 2, 2)


def test_completion_only_scoring_is_undone_on_exit() -> None:
    import torch
    import trl.trainer.utils as trl_utils

    from croco_pipeline.core.training.cpu_shortcuts import score_completion_tokens_only

    original = trl_utils._use_triton
    assert original(torch.device("cpu")) is False  # TRL scores every position on a CPU by itself
    with score_completion_tokens_only() as patched:
        assert patched and trl_utils._use_triton(torch.device("cpu")) is True
    assert trl_utils._use_triton is original


def test_frozen_layer_cache_leaves_layers_with_dropout_alone() -> None:
    """Layers that drop out in training give a different output each time: they are not cached."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from croco_pipeline.core.training.cpu_shortcuts import frozen_layer_cache

    def model(dropout: float):
        config = LlamaConfig(
            vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
            attention_dropout=dropout,
        )  # fmt: skip
        return LlamaForCausalLM(config)

    with frozen_layer_cache(model(0.1), first_adapted=2) as cache:
        assert cache is None
    plain = model(0.0)
    layers = list(plain.model.layers)
    with frozen_layer_cache(plain, first_adapted=2) as cache:
        assert cache is not None and plain.model.layers[0] is not layers[0]
    assert list(plain.model.layers) == layers  # put back on exit


def test_sft_trains_on_the_whole_conversation_as_the_authors_or_on_the_answer_only(
    base_model: str, tmp_path: Path
) -> None:
    from croco_pipeline.core.training.trainer import sft_rows

    records = pl.DataFrame({"prompt": ["Q1?", "Q2?", " ", "Q4?"], "response": ["A1.", "", "A3.", "A4."]})
    full = sft_rows(records, dataclasses.replace(SFTSettings(), loss="full_sequence"))
    # records with an empty prompt or response are left out (the authors' --filter_invalid_conversations)
    assert full == [
        {"messages": [{"role": "user", "content": "Q1?"}, {"role": "assistant", "content": "A1."}]},
        {"messages": [{"role": "user", "content": "Q4?"}, {"role": "assistant", "content": "A4."}]},
    ]
    answer_only = sft_rows(records, dataclasses.replace(SFTSettings(), loss="completion_only"))
    assert answer_only[0] == {
        "prompt": [{"role": "user", "content": "Q1?"}],
        "completion": [{"role": "assistant", "content": "A1."}],
    }
    # TRL trains the conversation format: a real run, its invalid records counted in the manifest
    result = train_sft(base_model, records, tmp_path / "sft", _tiny(SFTSettings, loss="full_sequence"))
    manifest = load_manifest(result.output_dir)
    assert manifest["settings"]["loss"] == "full_sequence" and manifest["invalid_records_left_out"] == 2
    assert manifest["num_examples"] == 2 and all(e["loss"] > 0 for e in result.log_history if "loss" in e)


def test_dpo_can_take_another_model_as_its_reference(base_model: str, tiny_lora_adapter_path, tmp_path: Path) -> None:
    """Later rounds (core.rounds) may score against another model than the one the adapter is trained on."""
    other = merge_adapter(tiny_lora_adapter_path, tmp_path / "other")
    settings = _tiny(DPOSettings, max_steps=1)
    plain = train_dpo(base_model, _pairs(4), tmp_path / "plain", settings)
    same = train_dpo(base_model, _pairs(4), tmp_path / "same", settings, reference_model=base_model)
    moved = train_dpo(base_model, _pairs(4), tmp_path / "moved", settings, reference_model=str(other))

    def first(result, key):
        return next(row[key] for row in result.log_history if key in row)

    # the base loaded again as the reference scores as the base with the adapter off does
    assert first(same, "rewards/margins") == pytest.approx(first(plain, "rewards/margins"), abs=1e-4)
    assert first(moved, "rewards/margins") != pytest.approx(first(plain, "rewards/margins"), abs=1e-3)
    assert load_manifest(moved.output_dir)["reference_model"] == str(other)
