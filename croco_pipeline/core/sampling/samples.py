"""Self-generation: put a language's prompts to a generator and collect one row per sample.

Used for the training samples (``generations``) and for the evaluation answers of the base and
tuned models, so both are made the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

import polars as pl

from croco_pipeline.core.io.hashing import config_hash
from croco_pipeline.core.models.generators import Generator
from croco_pipeline.core.prompts.sets import format_user_prompt
from croco_pipeline.core.sampling.config import SamplingConfig

# The samples table: one row per sampled answer.
GENERATION_SCHEMA: dict[str, pl.DataType] = {
    "prompt_id": pl.String(),
    "language": pl.String(),
    "sample_idx": pl.Int32(),
    "prompt": pl.String(),
    "response": pl.String(),
    "num_tokens": pl.Int32(),
    "finish_reason": pl.String(),
    "model": pl.String(),
    "config_hash": pl.String(),
}
GENERATION_COLUMNS = list(GENERATION_SCHEMA)


def select_prompts(prompts: pl.DataFrame, split: str, limit: int | None) -> pl.DataFrame:
    """The prompts of one split, in prompt_id order, at most ``limit`` of them (None: all)."""
    chosen = prompts.filter(pl.col("split") == split).sort("prompt_id")
    return chosen if limit is None else chosen.head(limit)


class ContextTooShortError(ValueError):
    """A prompt plus its answer budget does not fit the model's context: the answer would be cut by it."""


def check_room_to_answer(generator: Generator, user_turns: list[str], prompt_ids: list[str], max_new_tokens: int):
    """Refuse to sample when a prompt leaves fewer than ``max_new_tokens`` tokens of context: its answer would
    be cut by the context, not by the budget (the paper's judged answers may take 8192 new tokens)."""
    context = getattr(generator, "max_model_len", None)
    if not context or not user_turns:
        return
    lengths = generator.prompt_lengths(user_turns)
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    if lengths[longest] + max_new_tokens > context:
        raise ContextTooShortError(
            f"Prompt {prompt_ids[longest]} is {lengths[longest]} tokens long: with up to {max_new_tokens} new tokens "
            f"it needs a context of {lengths[longest] + max_new_tokens}, and {generator.model} is opened with "
            f"{context}. Raise its max_model_len (in the pipeline resources.policy.config.max_model_len, unset for "
            "the model's own context length; --max-model-len of croco generate) or lower the answer length."
        )


def sample_answers(
    generator: Generator,
    prompts: pl.DataFrame,
    language: str | None,
    sampling: SamplingConfig | Mapping[str, SamplingConfig],
    *,
    respond_in_language: bool,
    model_label: str,
    adapter_path: str | None = None,
) -> pl.DataFrame:
    """``sampling.n`` answers to every prompt in ``prompts`` (columns prompt_id, prompt), one row each.
    ``language`` None: each prompt's own (a ``language`` column; several languages in one batch).
    ``sampling`` per language (a mapping): each language's prompts sampled as its entry says, one
    ``generate`` call per distinct entry, the rows in the prompts' order."""
    languages = [language] * prompts.height if language is not None else prompts["language"].to_list()
    user_turns = [
        format_user_prompt(text, code, respond_in_language)
        for text, code in zip(prompts["prompt"], languages, strict=True)
    ]
    per_prompt = [sampling[code] if isinstance(sampling, Mapping) else sampling for code in languages]
    check_room_to_answer(
        generator, user_turns, prompts["prompt_id"].to_list(), max((s.max_new_tokens for s in per_prompt), default=0)
    )
    completions: list = [None] * len(user_turns)
    fingerprints = {}
    for config in dict.fromkeys(per_prompt):  # one call per distinct configuration, in first-seen order
        positions = [i for i, s in enumerate(per_prompt) if s == config]
        answers = generator.generate([user_turns[i] for i in positions], config, adapter_path=adapter_path)
        for i, samples in zip(positions, answers, strict=True):
            completions[i] = samples
        fingerprints[config] = config_hash(
            dict(
                model=model_label,
                adapter=adapter_path,
                sampling=asdict(config),
                respond_in_language=respond_in_language,
            )
        )
    rows = [
        {
            "prompt_id": prompt_id,
            "language": code,
            "sample_idx": sample_idx,
            "prompt": prompt,
            "response": completion.text,
            "num_tokens": completion.num_tokens,
            "finish_reason": completion.finish_reason,
            "model": model_label,
            "config_hash": fingerprints[config],
        }
        for prompt_id, prompt, code, config, samples in zip(
            prompts["prompt_id"], prompts["prompt"], languages, per_prompt, completions, strict=True
        )
        for sample_idx, completion in enumerate(samples)
    ]
    return pl.DataFrame(rows, schema=GENERATION_SCHEMA)
