"""Reward scorers: turn (prompt, response, language) triples into one number per response.

CroCo ranks each prompt's sampled answers with an English-trained Bradley-Terry reward model
(``Skywork/Skywork-Reward-V2-Qwen3-8B`` in the paper): :class:`SequenceClassifierScorer` runs any such
Hugging Face sequence-classification model. No trained reward model can be installed offline, so the
embedded laptop configuration uses :class:`LanguageFidelityScorer`, a transparent hand-written demo
score (is the answer in the requested language, and is it a non-degenerate answer?).

Nothing is dropped silently: conversations longer than the reward model's limit are either truncated
(and flagged) or skipped (score NaN, flagged), and the flags travel with every score.
"""

from __future__ import annotations

import gc
import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

from croco_pipeline.core.languages import identify as langid
from croco_pipeline.core.models.specs import resolve_model

log = logging.getLogger(__name__)

Overflow = Literal["truncate", "skip"]
RewardBackend = Literal["language_fidelity", "sequence_classifier"]


@dataclass
class ScoreBatch:
    """Scores in input order. ``truncated``: the conversation was cut to fit the reward model;
    ``skipped``: it was too long and not scored (score is NaN)."""

    scores: list[float]
    truncated: list[bool]
    skipped: list[bool]

    def __len__(self) -> int:
        return len(self.scores)


class RewardScorer(ABC):
    """Scores responses; use as a context manager so any model is released afterwards."""

    name: str  # recorded in every reward row, e.g. "language-fidelity-demo" or a model id

    @abstractmethod
    def score(
        self,
        prompts: list[str],
        responses: list[str],
        languages: list[str],
        finish_reasons: list[str] | None = None,
    ) -> ScoreBatch:
        """One score per (prompt, response, language); ``finish_reasons`` as in generation.Completion."""

    def close(self) -> None:
        """Release the model, if any. Safe to call twice."""

    def __enter__(self) -> "RewardScorer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_lengths(prompts: list[str], responses: list[str], languages: list[str], finish_reasons: Any) -> None:
    sizes = {"prompts": len(prompts), "responses": len(responses), "languages": len(languages)}
    if finish_reasons is not None:
        sizes["finish_reasons"] = len(finish_reasons)
    if len(set(sizes.values())) > 1:
        raise ValueError(f"score() needs lists of equal length, got {sizes}")


class LanguageFidelityScorer(RewardScorer):
    """DEMO scorer, not a trained reward model: rewards answers in the requested language and penalises
    degenerate ones. It lets the pipeline run end to end offline; it knows nothing about helpfulness.

    Formula, for a response in target language ``L``::

        empty or whitespace-only response        -> score = -1.0
        otherwise score = P(L | response)                 language ID probability, 0..1
                        - 0.5 * repeated_trigram_share    share of word 3-grams that repeat an earlier one
                        - 0.2 * [finish_reason == "length"]   cut off at the token limit
                        - 0.05 * max(0, 5 - n_words)      very short answers (under 5 words)

    so scores lie in about [-0.95, 1.0], and samples of one prompt spread out because the language
    probability is continuous.
    """

    name = "language-fidelity-demo"
    EMPTY_SCORE = -1.0
    REPETITION_WEIGHT = 0.5
    TRUNCATION_PENALTY = 0.2
    SHORT_WORDS = 5
    SHORT_PENALTY_PER_WORD = 0.05

    def score(
        self,
        prompts: list[str],
        responses: list[str],
        languages: list[str],
        finish_reasons: list[str] | None = None,
    ) -> ScoreBatch:
        _check_lengths(prompts, responses, languages, finish_reasons)
        reasons = finish_reasons or ["stop"] * len(responses)
        scores = [self.score_one(r, lang, reason) for r, lang, reason in zip(responses, languages, reasons)]
        flags = [False] * len(scores)
        return ScoreBatch(scores=scores, truncated=list(flags), skipped=list(flags))

    def score_one(self, response: str, language: str, finish_reason: str = "stop") -> float:
        """The formula in the class docstring, for one response."""
        words = response.split()
        if not words:
            return self.EMPTY_SCORE
        score = langid.probability_of(response, language)
        score -= self.REPETITION_WEIGHT * repeated_trigram_share(words)
        if finish_reason == "length":
            score -= self.TRUNCATION_PENALTY
        score -= self.SHORT_PENALTY_PER_WORD * max(0, self.SHORT_WORDS - len(words))
        return score


def repeated_trigram_share(words: list[str]) -> float:
    """Share of word 3-grams that already occurred earlier in the text (0 = no repetition, ->1 = a loop)."""
    trigrams = [tuple(w.lower() for w in words[i : i + 3]) for i in range(len(words) - 2)]
    if not trigrams:
        return 0.0
    return 1.0 - len(set(trigrams)) / len(trigrams)


class SequenceClassifierScorer(RewardScorer):
    """Any Hugging Face reward model with a one-logit sequence-classification head (Bradley-Terry).

    The input is the reward model's own chat template over ``[user: prompt, assistant: response]``
    (a plain ``User: ...\\nAssistant: ...`` text when it has none), tokenized without adding special
    tokens a second time (the template writes any BOS itself; Skywork-Reward-V2's reference usage strips
    the template's BOS and lets the tokenizer re-add it, which gives the same ids). The score
    is the raw logit (no sigmoid). Conversations longer than ``max_length`` tokens (or the model's
    position limit) keep their first ``max_length`` tokens (``overflow="truncate"``, flagged) or are not
    scored (``overflow="skip"``: NaN, flagged).
    """

    def __init__(
        self,
        model: str,
        *,
        max_length: int = 4096,
        overflow: Overflow = "truncate",
        batch_size: int = 8,
        device: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if overflow not in ("truncate", "skip"):
            raise ValueError(f"overflow must be 'truncate' or 'skip', got {overflow!r}")
        self.name = model
        self.model_path = resolve_model(model)
        self.overflow = overflow
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32

        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self._model: Any = AutoModelForSequenceClassification.from_pretrained(self.model_path, dtype=dtype)
        self._model.to(self.device).eval()
        if self._model.config.num_labels != 1:
            raise ValueError(
                f"Reward model {model!r} has {self._model.config.num_labels} output labels; a reward "
                "model for CroCo must have exactly one (the Bradley-Terry reward logit)."
            )
        # Batches are padded; the classifier finds each conversation's last real token via pad_token_id.
        if self._tokenizer.pad_token_id is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        if self._model.config.pad_token_id is None:
            self._model.config.pad_token_id = self._tokenizer.pad_token_id
        position_limit = getattr(self._model.config, "max_position_embeddings", None) or max_length
        self.max_length = min(max_length, position_limit)

    def encode(self, prompt: str, response: str) -> list[int]:
        """Token ids of one [user, assistant] conversation, before any truncation."""
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
                tokenize=False,
            )
            # The template writes any BOS itself (as transformers' own apply_chat_template(tokenize=True)).
            return tok(text, add_special_tokens=False)["input_ids"]
        return tok(f"User: {prompt}\nAssistant: {response}", add_special_tokens=True)["input_ids"]

    def score(
        self,
        prompts: list[str],
        responses: list[str],
        languages: list[str],
        finish_reasons: list[str] | None = None,
    ) -> ScoreBatch:
        import torch
        from tqdm.auto import tqdm

        _check_lengths(prompts, responses, languages, finish_reasons)
        if self._model is None:
            raise RuntimeError("This reward scorer was closed; open a new one.")
        n = len(prompts)
        scores = [math.nan] * n
        truncated = [False] * n
        skipped = [False] * n
        encoded: dict[int, list[int]] = {}
        for i, (prompt, response) in enumerate(zip(prompts, responses)):
            ids = self.encode(prompt, response)
            if len(ids) > self.max_length:
                if self.overflow == "skip":
                    skipped[i] = True
                    continue
                ids = ids[: self.max_length]
                truncated[i] = True
            encoded[i] = ids
        if any(skipped) or any(truncated):
            log.warning(
                "%s: %d of %d conversations exceed max_length=%d tokens (%d truncated, %d skipped)",
                self.name,
                sum(skipped) + sum(truncated),
                n,
                self.max_length,
                sum(truncated),
                sum(skipped),
            )

        # Longest first: similar lengths share a batch (less padding), and memory problems show up early.
        order = sorted(encoded, key=lambda i: len(encoded[i]), reverse=True)
        batches = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        with torch.no_grad():
            for batch in tqdm(batches, desc=f"reward ({self.name})", unit="batch"):
                enc = self._tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
                logits = self._model(**enc.to(self.device)).logits[:, 0].float().tolist()
                for i, value in zip(batch, logits):
                    scores[i] = value
        return ScoreBatch(scores=scores, truncated=truncated, skipped=skipped)

    def close(self) -> None:
        if getattr(self, "_model", None) is None:
            return
        self._model = None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def open_reward_scorer(
    backend: Literal["language_fidelity", "sequence_classifier"],
    model: str | None = None,
    *,
    max_length: int = 4096,
    overflow: Overflow = "truncate",
    batch_size: int = 8,
    device: str | None = None,
) -> RewardScorer:
    """Open a scorer. ``language_fidelity`` needs no model; ``sequence_classifier`` needs ``model``
    (a spec for :func:`~croco_pipeline.core.models.specs.resolve_model`: local folder or hub id)."""
    if backend == "language_fidelity":
        if model is not None:
            log.warning("open_reward_scorer: model=%r is ignored by the language_fidelity demo scorer", model)
        return LanguageFidelityScorer()
    if backend == "sequence_classifier":
        if not model:
            raise ValueError(
                "The sequence_classifier reward backend needs a model: a local folder or a hub id such "
                "as 'Skywork/Skywork-Reward-V2-Qwen3-8B'."
            )
        return SequenceClassifierScorer(
            model, max_length=max_length, overflow=overflow, batch_size=batch_size, device=device
        )
    raise ValueError(f"Unknown reward backend {backend!r}; use 'language_fidelity' or 'sequence_classifier'.")


def open_scorer(backend: str, model: str | None = None, **options) -> RewardScorer:
    """:func:`open_reward_scorer` with the model spec resolved first (``resolve_model``), wherever it runs."""
    from croco_pipeline.core.models.specs import resolve_model

    return open_reward_scorer(backend, resolve_model(model) if model else None, **options)
