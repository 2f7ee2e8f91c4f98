"""Model resolution, the embedded SmolLM2 conversion and the tiny test models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import build_tiny_policy, build_tiny_reward_model

from croco_pipeline.core.models.specs import (
    EMBEDDED_POLICY,
    ModelNotFoundError,
    cache_dir,
    resolve_model,
)

# --- resolve_model ------------------------------------------------------------------------------


def test_existing_directory_is_returned_as_is(tmp_path: Path) -> None:
    assert resolve_model(str(tmp_path)) == str(tmp_path)


@pytest.mark.parametrize("spec", ["./no-such-model", "../no-such-model", "/no/such/model", "~/no-such-model"])
def test_missing_path_raises_with_the_path(spec: str) -> None:
    with pytest.raises(ModelNotFoundError, match="no-such-model|/no/such/model") as info:
        resolve_model(spec)
    assert spec in str(info.value)
    assert "does not exist" in str(info.value)


def test_a_file_is_not_a_model_folder(tmp_path: Path) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        resolve_model(str(weights))


def test_hub_ids_pass_through() -> None:
    assert resolve_model("utter-project/EuroLLM-9B-Instruct-2512") == "utter-project/EuroLLM-9B-Instruct-2512"
    assert resolve_model("Skywork/Skywork-Reward-V2-Qwen3-8B") == "Skywork/Skywork-Reward-V2-Qwen3-8B"


def test_unknown_embedded_model() -> None:
    with pytest.raises(ModelNotFoundError, match=EMBEDDED_POLICY):
        resolve_model("embedded:gpt-5")


def test_cache_dir_follows_croco_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CROCO_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CROCO_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "croco"


# --- the embedded SmolLM2 ---------------------------------------------------------------------------


def test_embedded_policy_is_a_plain_hf_folder_that_answers_in_english(embedded_policy_path: Path) -> None:
    from croco_pipeline.core.languages import identify as langid
    from croco_pipeline.core.models.generators import open_generator
    from croco_pipeline.core.sampling.config import SamplingConfig

    config = json.loads((embedded_policy_path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config
    assert (embedded_policy_path / "model.safetensors").is_file()
    assert resolve_model(EMBEDDED_POLICY) == str(embedded_policy_path)  # converted once, then reused

    with open_generator(EMBEDDED_POLICY, "transformers") as generator:
        [[answer]] = generator.generate(
            ["What is the capital of France?"], SamplingConfig(n=1, temperature=0.0, max_new_tokens=16)
        )
    assert "Paris" in answer.text
    assert answer.finish_reason == "stop"
    assert langid.detect(answer.text)[0] == "en"


# --- tiny models ------------------------------------------------------------------------------------


def test_tiny_policy_is_deterministic_small_and_vllm_compatible(tiny_policy_path: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_policy_path)
    assert config.hidden_size // config.num_attention_heads >= 32  # vLLM's CPU attention needs it
    assert AutoTokenizer.from_pretrained(tiny_policy_path).chat_template

    again = build_tiny_policy(tmp_path / "again")
    first = AutoModelForCausalLM.from_pretrained(tiny_policy_path).state_dict()
    second = AutoModelForCausalLM.from_pretrained(again).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert sum(t.numel() for t in first.values()) < 10_000_000


def test_tiny_builders_reuse_an_existing_folder(tiny_policy_path: Path, tiny_reward_model_path: Path) -> None:
    for path, build in ((tiny_policy_path, build_tiny_policy), (tiny_reward_model_path, build_tiny_reward_model)):
        weights = path / "model.safetensors"
        before = weights.stat().st_mtime_ns
        assert build(path) == path
        assert weights.stat().st_mtime_ns == before


def test_tiny_reward_model_has_one_logit_and_its_own_pad_token(tiny_reward_model_path: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_reward_model_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_reward_model_path)
    assert config.num_labels == 1
    assert config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.chat_template
