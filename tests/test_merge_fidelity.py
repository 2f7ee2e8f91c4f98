"""Merging an adapter for serving never erases what it learned (core.models.adapters.merge_for_serving).

The base here is the tiny policy stored in bfloat16, so its weights lie on the bfloat16 grid (as a real
bfloat16 checkpoint's do), and the adapter changes each weight by far less than half a bfloat16 step: a
plain merge served in bfloat16 rounds nearly all of it back to the base weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from croco_pipeline.core.models.adapters import FIDELITY_NAME, MIN_KEPT_FRACTION, merge_for_serving

TEXTS = ["the cat is good and the dog is in the house", "le pain est bon et je pas soleil", "hus er en god dag"]
# Scales the random LoRA B matrices down to changes of about 1e-4 of a weight (bfloat16 keeps 8 bits: ~4e-3)
SMALL_ADAPTER_SCALE = 1e-4


@pytest.fixture(scope="module")
def bf16_base_and_small_adapter(tiny_policy_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("merge-fidelity")
    base_dir, adapter_dir = folder / "tiny-bf16", folder / "small-adapter"
    AutoModelForCausalLM.from_pretrained(tiny_policy_path, dtype=torch.bfloat16).save_pretrained(base_dir)
    AutoTokenizer.from_pretrained(tiny_policy_path).save_pretrained(base_dir)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.mul_(SMALL_ADAPTER_SCALE)
                if "o_proj" in name or "down_proj" in name:  # keep the tiny policy's constant dimension 0
                    param[0] = 0.0
    model.save_pretrained(adapter_dir)
    return base_dir, adapter_dir


def _logliks(model, tokenizer) -> torch.Tensor:
    """Summed log-likelihood of each of TEXTS (every token after the first) under a transformers model."""
    sums = []
    for text in TEXTS:
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            logits = model(ids).logits.float()
        sums.append(torch.log_softmax(logits[0, :-1], -1).gather(1, ids[0, 1:, None]).sum())
    return torch.stack(sums)


def _vllm_logliks(llm, tokenizer) -> torch.Tensor:
    """The same under a vLLM engine (its prompt log-probabilities)."""
    from vllm import SamplingParams

    prompts = [{"prompt_token_ids": tokenizer(text)["input_ids"]} for text in TEXTS]
    outputs = llm.generate(prompts, SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)
    sums = []
    for prompt, output in zip(prompts, outputs):
        ids = prompt["prompt_token_ids"]
        sums.append(sum(output.prompt_logprobs[i][ids[i]].logprob for i in range(1, len(ids))))
    return torch.tensor(sums)


def test_a_small_adapter_keeps_its_log_likelihoods_through_croco_merge_where_a_bf16_merge_loses_them(
    bf16_base_and_small_adapter: tuple[Path, Path], tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir, adapter_dir = bf16_base_and_small_adapter
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    unmerged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), adapter_dir
    )
    unmerged.eval()
    reference = _logliks(unmerged, tokenizer)
    with unmerged.disable_adapter():
        effect = (reference - _logliks(unmerged, tokenizer)).abs().max()
    assert effect > 1e-3, "the adapter must change the model for this test to mean anything"

    # croco's merge for a bfloat16 engine: too little survives bfloat16, so float32 it is
    served = merge_for_serving(adapter_dir, tmp_path / "served", "bfloat16")
    assert served.fidelity.dtype == "bfloat16" and served.fidelity.kept_fraction < 0.5 < MIN_KEPT_FRACTION
    assert served.dtype == "float32"
    assert (served.path / FIDELITY_NAME).is_file()
    model = AutoModelForCausalLM.from_pretrained(served.path, dtype=getattr(torch, served.dtype))
    assert (_logliks(model, tokenizer) - reference).abs().max() < effect / 50

    # a plain merge into bfloat16 weights (what a bfloat16 engine holds): most of the adapter is gone,
    # even when those weights are then computed in float32
    plain = merge_for_serving(adapter_dir, tmp_path / "plain", "bfloat16", min_kept_fraction=0.0)
    assert plain.dtype == "bfloat16"
    model = AutoModelForCausalLM.from_pretrained(plain.path, dtype=torch.float32)
    assert (_logliks(model, tokenizer) - reference).abs().max() > effect / 2


def test_a_generator_of_a_tuned_model_says_how_it_serves_the_adapter(
    bf16_base_and_small_adapter: tuple[Path, Path], tiny_lora_adapter_path: Path, tiny_policy_path: Path
) -> None:
    """``open_adapter_generator`` measures the merge in the engine's dtype: the small adapter on the bfloat16
    base is served in float32; the tests' ordinary adapter on the float32 tiny policy survives bfloat16."""
    from croco_pipeline.core.models.lifetime import open_adapter_generator

    base_dir, adapter_dir = bf16_base_and_small_adapter
    options = dict(serving="merged", backend="transformers", max_model_len=256, dtype="bfloat16")
    with open_adapter_generator(str(base_dir), str(adapter_dir), **options) as generator:
        serving = generator.adapter_serving
        assert (serving.method, serving.dtype, serving.measured_in) == ("merged_float32", "float32", "bfloat16")
        assert serving.kept_fraction < 0.5
        assert "float32" in serving.describe() and "bfloat16 keeps" in serving.describe()
    with open_adapter_generator(str(tiny_policy_path), str(tiny_lora_adapter_path), **options) as generator:
        serving = generator.adapter_serving
        assert (serving.method, serving.dtype) == ("merged", "bfloat16")
        assert serving.kept_fraction == pytest.approx(1.0, abs=0.05)
        assert serving.as_dict()["adapter_kept_fraction"] == serving.kept_fraction


@pytest.mark.system
def test_vllm_serves_a_small_adapter_in_float32_beside_the_shared_bf16_engine(
    bf16_base_and_small_adapter: tuple[Path, Path],
) -> None:
    """In ``croco demo`` a tuned model borrows the shared engine; one that bfloat16 would erase gets an
    engine of its own in float32, whose log-likelihoods are the unmerged adapter's, and the shared engine
    still serves the base."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from croco_pipeline.core.models import lifetime

    base_dir, adapter_dir = bf16_base_and_small_adapter
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    unmerged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), adapter_dir
    )
    unmerged.eval()
    reference = _logliks(unmerged, tokenizer)
    with unmerged.disable_adapter():
        effect = (reference - _logliks(unmerged, tokenizer)).abs().max()
    options = dict(keep_loaded=True, backend="vllm", dtype="bfloat16", max_model_len=256, seed=0)
    try:
        base = lifetime.open_policy_generator(str(base_dir), **options)
        base_logliks = _vllm_logliks(base._inner._llm, tokenizer)
        with lifetime.open_adapter_generator(str(base_dir), str(adapter_dir), serving="merged", **options) as tuned:
            assert tuned.adapter_serving.method == "merged_float32"
            assert tuned._inner not in lifetime._SHARED_GENERATORS.values(), "an engine of its own"
            assert (_vllm_logliks(tuned._inner._llm, tokenizer) - reference).abs().max() < effect / 10
        assert torch.equal(_vllm_logliks(base._inner._llm, tokenizer), base_logliks)
    finally:
        lifetime.close_shared_generators()


def test_the_serving_dtype_is_the_one_the_engine_will_compute_in() -> None:
    from croco_pipeline.core.models.generators import serving_dtype
    from croco_pipeline.core.models.hardware import cpu_engine_for_this_machine

    # no GPU here: vLLM follows the CPU's bfloat16 instructions, transformers computes in float32
    assert serving_dtype("any", "vllm") == cpu_engine_for_this_machine().dtype
    assert serving_dtype("any", "vllm", "bf16") == "bfloat16"
    assert serving_dtype("any", "transformers") == "float32"
    assert serving_dtype("any", "transformers", "bfloat16") == "bfloat16"
