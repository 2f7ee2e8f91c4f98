"""Tiny random models for tests and for the pipeline's "tiny" configuration.

They are built on the fly (no download), in about a second, and are deterministic. They reuse the
SmolLM2 tokenizer (real BPE vocabulary and chat template) from the embedded package, so prompts and
answers are tokenized exactly as with a real chat model.

A purely random language model over 49k tokens never emits end-of-sequence and produces sub-word
noise. The tiny policy is therefore *shaped*: it only ever says words from a small multilingual word
list (English, Danish, Dutch, French) plus end-of-sequence, so its answers are readable words, some
stop early and some hit the length limit, and language ID gives them varied scores. How:

* residual dimension 0 carries a constant 1.0 (set in every token embedding; the attention and MLP
  output rows that would write to it are zeroed), so after the final RMSNorm it is always positive;
* the output layer gives that dimension weight +1 for the allowed tokens and -1 for every other
  token, so only allowed tokens get probability; the remaining dimensions (random) pick among them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from croco_pipeline.core.io.atomic import build_directory_once
from croco_pipeline.core.models.specs import embedded_tokenizer_dir

# Words the tiny policy babbles; only those that are one SmolLM2 token (with a leading space) are used.
_TINY_WORDS = (
    "the a cat dog house is and of to in we you it good day sun water bread "  # English
    "hus er en det at har god dag brød "  # Danish
    "de van is zon water brood "  # Dutch
    "le la est et pas je bon jour pain soleil"  # French
).split()

_HIDDEN = 64  # 2 heads of head_dim 32: vLLM's CPU attention needs head_dim >= 32
_SEED = 0


def _tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_tokenizer_dir())


def _llama_config(tokenizer, **extra):
    from transformers import LlamaConfig

    settings = dict(
        vocab_size=len(tokenizer),
        hidden_size=_HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    settings.update(extra)
    return LlamaConfig(**settings)


def _allowed_token_ids(tokenizer) -> list[int]:
    ids: list[int] = []
    for word in _TINY_WORDS:
        pieces = tokenizer.encode(" " + word, add_special_tokens=False)
        if len(pieces) == 1 and pieces[0] not in ids:
            ids.append(pieces[0])
    return ids


def build_tiny_policy(path: str | Path) -> Path:
    """Write a tiny ``LlamaForCausalLM`` (~6M parameters, mostly embeddings) with a chat template to ``path``.

    Reuses ``path`` when it already holds one. Same weights on every machine (seeded).
    """
    from transformers import GenerationConfig, LlamaForCausalLM

    def build(tmp: Path) -> None:
        tokenizer = _tokenizer()
        config = _llama_config(tokenizer, tie_word_embeddings=False)
        with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
            torch.manual_seed(_SEED)
            model = LlamaForCausalLM(config)
            allowed = torch.tensor(_allowed_token_ids(tokenizer) + [tokenizer.eos_token_id])
            with torch.no_grad():
                model.model.embed_tokens.weight[:, 0] = 1.0
                for layer in model.model.layers:
                    layer.self_attn.o_proj.weight[0] = 0.0
                    layer.mlp.down_proj.weight[0] = 0.0
                head = model.lm_head.weight
                head.zero_()
                head[:, 0] = -1.0
                head[allowed] = torch.randn(len(allowed), _HIDDEN) * 1.5
                head[allowed, 0] = 1.0
        model.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
        )
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return build_directory_once(Path(path), build)


def build_tiny_reward_model(path: str | Path) -> Path:
    """Write a tiny random ``LlamaForSequenceClassification`` (one output: the reward logit) to ``path``.

    Its scores mean nothing; they are deterministic and spread over a few units (the score head is
    initialised with unit variance so the raw logits are visibly not probabilities). The pad token is
    ``<|endoftext|>``, distinct from the ``<|im_end|>`` that closes each chat turn, so the classifier
    reads the real last token of each conversation. Reuses ``path`` when it already holds one.
    """
    from transformers import LlamaForSequenceClassification

    def build(tmp: Path) -> None:
        tokenizer = _tokenizer()
        tokenizer.pad_token = "<|endoftext|>"
        config = _llama_config(tokenizer, num_labels=1, pad_token_id=tokenizer.pad_token_id)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_SEED + 1)
            model = LlamaForSequenceClassification(config)
            with torch.no_grad():
                model.score.weight.normal_(0.0, 1.0)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return build_directory_once(Path(path), build)
