"""Multiple-choice evaluation by log-likelihood: does tuning make the model forget what it knew?

The paper checks for catastrophic forgetting with EuroEval (docs/design.md §1.6), which needs downloads. This
module is the offline stand-in: a small shipped set of 4-way multiple-choice questions per language
(``croco_pipeline/data/mc/{lang}.jsonl``), answered without generation. For every choice the model
scores the choice text as its own answer to the question:

    log P(choice tokens | chat template applied to [user: question], assistant turn opened)

and the predicted answer is the choice with the highest score (``normalize="mean"``: per-token mean, so
long choices are not penalised for their length; ``"sum"``: the total). Accuracy comes with a Wilson
binomial confidence interval, which stays inside [0, 1] and behaves at 0 % and 100 %, where the normal
approximation does not.

No Dagster here; torch and transformers are imported only by :func:`score_choices`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Literal

import polars as pl

from croco_pipeline.core.io import shipped_data as shipped
from croco_pipeline.core.languages.codes import get_language

NUM_CHOICES = 4


class MCDataError(ValueError):
    """A multiple-choice file that cannot be used; the message names the file, the line and the fix."""


# ----------------------------------------------------------------------------- tasks


def mc_languages() -> list[str]:
    """Languages that have a shipped multiple-choice set."""
    return shipped.shipped_languages("mc")


def load_mc_tasks(language: str, path: str | Path | None = None) -> pl.DataFrame:
    """The multiple-choice questions of one language, validated: one row per question.

    Reads the shipped ``data/mc/{language}.jsonl`` unless ``path`` names another JSONL file of the same
    format (``{"question_id", "question", "choices": [4 strings], "answer": index}``).
    Columns: question_id, language, question, choices (list of 4 strings), answer (0..3).
    """
    get_language(language)
    text, source = shipped.shipped_or_file_text(
        "mc",
        language,
        path,
        MCDataError,
        what="multiple-choice set",
        file_label="Multiple-choice",
        hint=" Pass the path of your own JSONL file with the same fields.",
    )
    return _validate_mc(text, language, source)


def _validate_mc(text: str, language: str, source: str) -> pl.DataFrame:
    rows: list[dict] = []
    seen: set[str] = set()
    for line_number, row in shipped.parse_jsonl(text, source, MCDataError):
        where = f"{source}, line {line_number}"
        missing = [key for key in ("question_id", "question", "choices", "answer") if key not in row]
        if missing:
            raise MCDataError(f"{where}: missing {', '.join(missing)}.")
        question_id, question, choices, answer = row["question_id"], row["question"], row["choices"], row["answer"]
        if not isinstance(question_id, str) or not question_id:
            raise MCDataError(f"{where}: question_id must be a non-empty string, got {question_id!r}.")
        if question_id in seen:
            raise MCDataError(f"{where}: duplicate question_id {question_id!r}.")
        seen.add(question_id)
        if not isinstance(question, str) or not question.strip():
            raise MCDataError(f"{where}: question must be a non-empty string.")
        if (
            not isinstance(choices, list)
            or len(choices) != NUM_CHOICES
            or not all(isinstance(choice, str) and choice.strip() for choice in choices)
        ):
            raise MCDataError(f"{where}: choices must be a list of {NUM_CHOICES} non-empty strings, got {choices!r}.")
        if len(set(choices)) != NUM_CHOICES:
            raise MCDataError(f"{where}: choices must be distinct, got {choices!r}.")
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < NUM_CHOICES:
            raise MCDataError(
                f"{where}: answer must be the index of the right choice (0..{NUM_CHOICES - 1}), got {answer!r}."
            )
        rows.append(
            {
                "question_id": question_id,
                "language": language,
                "question": question,
                "choices": choices,
                "answer": answer,
            }
        )
    if not rows:
        raise MCDataError(f"{source}: no questions.")
    return pl.DataFrame(
        rows,
        schema={
            "question_id": pl.String,
            "language": pl.String,
            "question": pl.String,
            "choices": pl.List(pl.String),
            "answer": pl.Int64,
        },
    )


# ----------------------------------------------------------------------------- scoring


# The columns of score_choices' table, one row per question.
SCORED_SCHEMA = {
    "question_id": pl.String,
    "language": pl.String,
    "answer": pl.Int64,
    "predicted": pl.Int64,
    "correct": pl.Boolean,
    "loglik": pl.List(pl.Float64),
    "num_tokens": pl.List(pl.Int64),
    "score": pl.List(pl.Float64),
}


def score_choices(
    model_path: str,
    tasks: pl.DataFrame,
    adapter_path: str | None = None,
    batch_size: int = 8,
    normalize: Literal["mean", "sum"] = "mean",
    device: str | None = None,
) -> pl.DataFrame:
    """Score every choice of every question by the model's log-likelihood; one row per question.

    ``model_path`` is a folder or hub id a causal LM loads from (resolve ``embedded:`` specs first with
    :func:`croco_pipeline.core.models.specs.resolve_model`); ``adapter_path`` an optional LoRA adapter on top.
    Columns (:data:`SCORED_SCHEMA`): question_id, language, answer, predicted, correct, loglik (per-choice
    summed log-prob), num_tokens (per-choice token counts), score (per-choice value that was compared).
    ``batch_size`` counts questions per forward pass (each brings all its choices).
    """
    _check_scoring_inputs(tasks, batch_size, normalize)
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer, model = _load_scoring_model(model_path, adapter_path, device)
    prompt_ids, choice_ids = _tokenize_questions(tokenizer, tasks)
    logliks = _choice_logliks(model, prompt_ids, choice_ids, batch_size, device, pad_id=tokenizer.pad_token_id or 0)
    del model
    return _question_rows(tasks, logliks, normalize)


def _check_scoring_inputs(tasks: pl.DataFrame, batch_size: int, normalize: str) -> None:
    if normalize not in ("mean", "sum"):
        raise ValueError(f"normalize must be 'mean' or 'sum', got {normalize!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    missing = [column for column in ("question_id", "question", "choices", "answer") if column not in tasks.columns]
    if missing:
        raise ValueError(f"tasks lack column(s) {missing}; load them with load_mc_tasks()")
    if tasks.is_empty():
        raise ValueError("no tasks to score")


def _load_scoring_model(model_path: str, adapter_path: str | None, device: str):
    """(tokenizer, model in eval mode on ``device``); the adapter, if any, merged into the weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.chat_template is None:
        raise ValueError(
            f"{model_path}: the tokenizer has no chat template; the MC eval puts each question as a user turn"
        )
    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=torch.float32 if device == "cpu" else torch.bfloat16
    )
    if adapter_path is not None:
        from peft import PeftModel

        # Merged once into the weights: the same model, without LoRA's extra matmuls in every layer.
        model = PeftModel.from_pretrained(model, adapter_path).merge_and_unload()
    model.to(device).eval()
    return tokenizer, model


def _tokenize_questions(tokenizer, tasks: pl.DataFrame) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Token ids of each question as a templated user turn (assistant turn opened), and of each choice."""
    prompt_ids: list[list[int]] = []
    choice_ids: list[list[list[int]]] = []
    for question, choices in zip(tasks["question"].to_list(), tasks["choices"].to_list()):
        prompt_text = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        # The template already holds any BOS token; do not add another.
        prompt_ids.append(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
        encoded = [tokenizer(choice, add_special_tokens=False)["input_ids"] for choice in choices]
        for choice, ids in zip(choices, encoded):
            if not ids:
                raise ValueError(f"choice {choice!r} tokenizes to nothing")
        choice_ids.append(encoded)
    return prompt_ids, choice_ids


def _question_rows(tasks: pl.DataFrame, logliks: list[tuple[float, int]], normalize: str) -> pl.DataFrame:
    """One row per question from the flat (summed log-prob, token count) of every choice: the compared
    scores and the predicted choice (the first one on a tie)."""
    rows = []
    offset = 0
    for row in tasks.iter_rows(named=True):
        count = len(row["choices"])
        chunk = logliks[offset : offset + count]
        offset += count
        sums = [total for total, _ in chunk]
        lengths = [n for _, n in chunk]
        scores = [total / n for total, n in chunk] if normalize == "mean" else sums
        predicted = max(range(count), key=lambda i: scores[i])  # first one on a tie
        rows.append(
            {
                "question_id": row["question_id"],
                "language": row.get("language"),
                "answer": int(row["answer"]),
                "predicted": predicted,
                "correct": predicted == int(row["answer"]),
                "loglik": sums,
                "num_tokens": lengths,
                "score": scores,
            }
        )
    return pl.DataFrame(rows, schema=SCORED_SCHEMA)


def _choice_logliks(
    model, prompt_ids: list[list[int]], choice_ids: list[list[list[int]]], batch_size: int, device: str, pad_id: int
) -> list[tuple[float, int]]:
    """(summed log-prob, token count) of every choice given its question, flattened in input order.

    The templated question is usually much longer than a choice, so each question is run once and its
    key/value cache is shared by its choices. The questions' common beginning (SmolLM2's template opens
    every one with the same 21-token system prompt, about 40 % of a question) is run once for all of
    them. A batch of questions then continues that prefix's cache, left-padded between prefix and
    question (position ids count real tokens only), and every choice continues its question's cache,
    right-padded. Padding never changes real positions under the causal mask.
    """
    import copy

    import torch

    shared = _common_prefix_length(prompt_ids)
    order = sorted(range(len(prompt_ids)), key=lambda q: len(prompt_ids[q]))
    per_question: dict[int, list[tuple[float, int]]] = {}
    with torch.inference_mode():
        prefix_cache = None
        if shared:
            prefix_ids = torch.tensor([prompt_ids[0][:shared]], device=device)
            prefix_cache = model(input_ids=prefix_ids, use_cache=True, logits_to_keep=1).past_key_values
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(prompt_ids[q]) - shared for q in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            own = torch.zeros((len(batch), width), dtype=torch.long)  # the question's own tokens
            for row, q in enumerate(batch):
                rest = prompt_ids[q][shared:]
                ids[row, width - len(rest) :] = torch.tensor(rest)
                own[row, width - len(rest) :] = 1
            mask = torch.cat([torch.ones((len(batch), shared), dtype=torch.long), own], dim=-1)
            cache = None
            if prefix_cache is not None:
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(len(batch))
            out = model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=(shared + (own.cumsum(-1) - 1).clamp(min=0)).to(device),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # predicts each choice's first token
            cache = out.past_key_values

            rows = [(row, choice) for row, q in enumerate(batch) for choice in choice_ids[q]]
            select = torch.tensor([row for row, _ in rows])
            cache.batch_select_indices(select.to(device))
            longest = max(len(choice) for _, choice in rows)
            cont = torch.full((len(rows), longest), pad_id, dtype=torch.long)
            cont_mask = torch.zeros((len(rows), longest), dtype=torch.long)
            for r, (_, choice) in enumerate(rows):
                cont[r, : len(choice)] = torch.tensor(choice)
                cont_mask[r, : len(choice)] = 1
            prompt_lengths = mask.sum(-1)[select]
            # log-prob of each choice token after the first (zeros where a choice is shorter)
            later = torch.zeros((len(rows), max(longest - 1, 0)))
            if longest > 1:  # hidden[:, j] predicts choice token j + 1
                hidden = model.get_decoder()(
                    input_ids=cont.to(device),
                    attention_mask=torch.cat([mask[select], cont_mask], dim=-1).to(device),
                    position_ids=(prompt_lengths[:, None] + torch.arange(longest)[None, :]).to(device),
                    past_key_values=cache,
                    use_cache=True,
                ).last_hidden_state[:, :-1]
                # The LM head (a third of this small model's work per token) only where a choice goes on
                scored = cont_mask[:, 1:].bool()
                logprobs = torch.log_softmax(model.get_output_embeddings()(hidden[scored.to(device)]).float(), dim=-1)
                targets = cont[:, 1:][scored].to(device)
                later[scored] = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1).cpu()
            first_token = first[select.to(device)].gather(-1, cont[:, :1].to(device)).squeeze(-1).cpu()
            for r, (row, choice) in enumerate(rows):
                total = float(first_token[r]) + float(later[r, : len(choice) - 1].sum())
                per_question.setdefault(batch[row], []).append((total, len(choice)))
    return [result for q in range(len(prompt_ids)) for result in per_question[q]]


def _common_prefix_length(prompt_ids: list[list[int]]) -> int:
    """Tokens every prompt starts with, leaving each prompt at least one token of its own."""
    shortest = min(len(ids) for ids in prompt_ids)
    length = 0
    while length < shortest - 1 and all(ids[length] == prompt_ids[0][length] for ids in prompt_ids):
        length += 1
    return length


# ----------------------------------------------------------------------------- statistics


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    ``successes`` may be fractional (ties counted as half a success), which the formula accepts as is.
    """
    if n <= 0:
        raise ValueError("cannot compute a confidence interval from zero trials")
    if not 0.0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n={n}], got {successes}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    p = successes / n
    denominator = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half_width = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, center - half_width), min(1.0, center + half_width)


def accuracy_with_ci(correct: Sequence[bool], confidence: float = 0.95) -> tuple[float, float, float]:
    """(accuracy, low, high): share of ``True`` with its Wilson confidence interval, all in [0, 1]."""
    values = list(correct)
    if not values:
        raise ValueError("no answers: cannot compute an accuracy")
    successes = sum(bool(value) for value in values)
    low, high = wilson_interval(successes, len(values), confidence)
    return successes / len(values), low, high


def mc_summary(scored: pl.DataFrame, confidence: float = 0.95) -> dict:
    """The evaluation row of one scored MC run: n, correct, accuracy and its Wilson interval."""
    accuracy, low, high = accuracy_with_ci(scored["correct"].to_list(), confidence)
    return {
        "n": scored.height,
        "n_correct": int(scored["correct"].sum()),
        "accuracy": accuracy,
        "ci_low": low,
        "ci_high": high,
        "confidence": confidence,
    }
