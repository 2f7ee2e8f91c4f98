"""Pairwise LLM judge: is the tuned model's answer better than the base model's? (docs/design.md §1.6)

The paper judges each tuned model's answer against the **base model's own answer** (the "reference")
with an LLM judge (Qwen3 MoE, thinking off, temperature 0.7). Judges favour whichever answer they see
first, so each pair is shown in a random order: with probability 0.5 the reference goes first
("swapped"). The flip of each pair is a pure function of (seed, key), so a rerun, a resumed run or a
run over a subset shows every pair in the same order.

Two prompts: ``"paper"`` is the authors' judge prompt word for word (``{instruction}``, ``{output_1}``,
``{output_2}``; ``"paper_no_ties"`` is its variant that allows no tie), and ``"croco"`` is this
project's MT-Bench-style prompt, which also asks whether the answer is in the user's language (a
criterion that rewards exactly what CroCo tunes for, so the ``paper`` profile does not use it).

The judge ends with ``[[1]]`` (first answer better), ``[[2]]`` (second better) or ``[[T]]`` (tie). Parsing and
the swap-aware conversion to the tuned model's preference live in :mod:`croco_pipeline.core.evaluation.win_rates`
(last match wins; no match = unparseable, kept in the table with a null preference and counted).

:func:`reward_as_judge` produces the same table from a reward model's scores, for runs without a judge
LLM (and for comparing the two judges).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import polars as pl

from croco_pipeline.core.evaluation.win_rates import (
    parse_verdict,
    verdict_to_preference,
)
from croco_pipeline.core.languages.codes import language_name
from croco_pipeline.core.models.generators import Generator
from croco_pipeline.core.models.reward_scorers import RewardScorer
from croco_pipeline.core.sampling.config import SamplingConfig

JUDGE_TEMPLATE = """\
Please act as an impartial judge and evaluate the quality of the answers that two AI assistants gave \
to the user question below. The user wrote in {language}, so a good answer is written in {language}.

Judge which answer follows the user's instructions and answers the question better: consider \
correctness, helpfulness, relevance, depth and clarity, and whether it is written in {language}. \
Do not let the order of the answers, their length or the assistants' names influence you.

[User Question]
{question}

[The Start of Assistant A's Answer]
{answer_a}
[The End of Assistant A's Answer]

[The Start of Assistant B's Answer]
{answer_b}
[The End of Assistant B's Answer]

Explain your reasoning briefly, then end your reply with exactly one verdict: "[[1]]" if assistant A \
is better, "[[2]]" if assistant B is better, or "[[T]]" if they are equally good."""

# The paper's judge prompt, word for word (ties allowed; a tie counts half).
PAPER_JUDGE_TEMPLATE = (
    "I need you to compare two responses to the same instruction. Please analyze both responses carefully and "
    "determine which one is better overall.\n"
    "<instruction>{instruction}</instruction>\n"
    "<output_1>{output_1}</output_1>\n"
    "<output_2>{output_2}</output_2>\n"
    "Compare the two outputs above. Consider helpfulness, relevance, accuracy, depth, creativity, and level of "
    "detail. Keep your analysis to at most 500 tokens. After your analysis, output your final verdict by strictly "
    'following this format: "[[1]]" if output_1 is better, "[[2]]" if output_2 is better, "[[T]]" if they are '
    "equally good. Your final line must be exactly one of: [[1]], [[2]], or [[T]]. Do NOT output any other text "
    "after your verdict."
)
# The paper's variant without ties: no "[[T]]" clause, and only [[1]] or [[2]] on the final line.
PAPER_JUDGE_TEMPLATE_NO_TIES = PAPER_JUDGE_TEMPLATE.replace(', "[[T]]" if they are equally good', "").replace(
    "exactly one of: [[1]], [[2]], or [[T]]", "exactly one of: [[1]] or [[2]]"
)
JudgePrompt = Literal["croco", "paper", "paper_no_ties"]
Judge = Literal["reward", "llm"]  # who compares a tuned answer with the base's: the reward scorer or an LLM
JUDGE_PROMPTS: tuple[str, ...] = get_args(JudgePrompt)


def render_judge_prompt(style: JudgePrompt, question: str, first: str, second: str, language: str) -> str:
    """The judge's user message for one pair, ``first`` shown as A / output_1."""
    if style == "croco":
        return JUDGE_TEMPLATE.format(
            language=language_name(language), question=question, answer_a=first, answer_b=second
        )
    if style in ("paper", "paper_no_ties"):
        template = PAPER_JUDGE_TEMPLATE if style == "paper" else PAPER_JUDGE_TEMPLATE_NO_TIES
        return template.format(instruction=question, output_1=first, output_2=second)
    raise ValueError(f"unknown judge prompt {style!r}; choose one of {', '.join(JUDGE_PROMPTS)}")


JUDGMENT_SCHEMA = {
    "key": pl.String,
    "language": pl.String,
    "swapped": pl.Boolean,
    "verdict": pl.String,
    "preference": pl.Float64,
    "judge_text": pl.String,
    "model_length": pl.Int64,
    "reference_length": pl.Int64,
}


def swap_flags(keys: Sequence[str], seed: int) -> list[bool]:
    """Whether each pair is shown reference-first; True with probability 0.5.

    Each flag comes from a hash of (seed, key) alone, so it does not depend on the other keys, their
    order, or Python's per-process hash salt.
    """
    flags = []
    for key in keys:
        digest = hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()
        flags.append(int.from_bytes(digest[:8], "big") < 2**63)
    return flags


def _check_aligned(**columns: Sequence) -> int:
    sizes = {name: len(values) for name, values in columns.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"inputs must have one entry per pair, got lengths {sizes}")
    return next(iter(sizes.values()), 0)


@dataclass(frozen=True)
class PairsToJudge:
    """(model answer, reference answer) pairs, one entry per pair in every field: the question both
    answer, the two answers, the question's language, and a key naming the pair (unique, e.g.
    ``prompt_id:sample_idx``; it seeds the pair's swap)."""

    questions: Sequence[str]
    model_answers: Sequence[str]
    reference_answers: Sequence[str]
    languages: Sequence[str]
    keys: Sequence[str]

    def __post_init__(self) -> None:
        _check_aligned(
            questions=self.questions,
            model_answers=self.model_answers,
            reference_answers=self.reference_answers,
            languages=self.languages,
            keys=self.keys,
        )

    def __len__(self) -> int:
        return len(self.keys)


def build_judge_prompts(pairs: PairsToJudge, swaps: Sequence[bool], style: JudgePrompt = "croco") -> list[str]:
    """The judge's user message for each pair: the model's answer is first unless swapped, then second."""
    _check_aligned(pairs=pairs.keys, swaps=swaps)
    prompts = []
    for question, model_answer, reference_answer, language, swapped in zip(
        pairs.questions, pairs.model_answers, pairs.reference_answers, pairs.languages, swaps
    ):
        first, second = (reference_answer, model_answer) if swapped else (model_answer, reference_answer)
        prompts.append(render_judge_prompt(style, question, first, second, language))
    return prompts


def _check_keys(keys: Sequence[str]) -> None:
    seen: set[str] = set()
    for key in keys:
        if not isinstance(key, str) or not key:
            raise ValueError(f"every key must be a non-empty string, got {key!r}")
        if key in seen:
            raise ValueError(
                f"duplicate key {key!r}: each judgment needs its own key (e.g. prompt_id/language/sample_idx)"
            )
        seen.add(key)


def judge_pairs(
    generator: Generator,
    pairs: PairsToJudge,
    *,
    seed: int = 0,
    max_new_tokens: int = 512,
    temperature: float = 0.7,
    prompt_style: JudgePrompt = "croco",
) -> pl.DataFrame:
    """Ask the judge LLM about every (model answer, reference answer) pair; one row per judgment.

    Columns: key, language, swapped, verdict ("1"/"2"/"T", null when unparseable), preference (the
    model's: 1 win, 0.5 tie, 0 loss, null when unparseable; summaries may count a tie otherwise, see
    ``win_rates.outcome_stats``), judge_text (raw), model_length and reference_length (characters, for
    the length-controlled win rate).
    """
    _check_keys(pairs.keys)
    swaps = swap_flags(pairs.keys, seed)
    prompts = build_judge_prompts(pairs, swaps, prompt_style)
    sampling = SamplingConfig(n=1, temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens, seed=seed)
    outputs = generator.generate(prompts, sampling) if prompts else []
    if len(outputs) != len(prompts):
        raise RuntimeError(f"the judge returned {len(outputs)} answers for {len(prompts)} prompts")
    texts = [completions[0].text for completions in outputs]
    verdicts = [parse_verdict(text) for text in texts]
    return _judgment_table(
        pairs,
        swapped=swaps,
        verdicts=verdicts,
        preferences=[verdict_to_preference(v, s) for v, s in zip(verdicts, swaps)],
        texts=texts,
    )


def _judgment_table(
    pairs: PairsToJudge,
    swapped: Sequence[bool],
    verdicts: Sequence[str | None],
    preferences: Sequence[float | None],
    texts: Sequence[str],
) -> pl.DataFrame:
    """One row per pair, columns :data:`JUDGMENT_SCHEMA`."""
    return pl.DataFrame(
        {
            "key": list(pairs.keys),
            "language": list(pairs.languages),
            "swapped": list(swapped),
            "verdict": list(verdicts),
            "preference": list(preferences),
            "judge_text": list(texts),
            "model_length": [len(answer) for answer in pairs.model_answers],
            "reference_length": [len(answer) for answer in pairs.reference_answers],
        },
        schema=JUDGMENT_SCHEMA,
    )


def reward_as_judge(scorer: RewardScorer, pairs: PairsToJudge) -> pl.DataFrame:
    """The judge table from reward scores: the model wins when its answer's reward is higher.

    Equal rewards are a tie. A pair whose rewards cannot be compared (skipped as too long, or not a
    finite number) gets a null verdict and preference, like an unparseable LLM verdict. Nothing is
    shown to anyone, so ``swapped`` is False, the verdict reads as if the model's answer were A, and
    ``judge_text`` is empty.
    """
    _check_keys(pairs.keys)
    n = len(pairs)
    if n == 0:
        return pl.DataFrame(schema=JUDGMENT_SCHEMA)
    batch = scorer.score(
        list(pairs.questions) * 2,
        list(pairs.model_answers) + list(pairs.reference_answers),
        list(pairs.languages) * 2,
    )
    # a conversation skipped as too long has no usable score
    scores = [math.nan if skipped else score for score, skipped in zip(batch.scores, batch.skipped)]
    return judgments_from_scores(pairs, scores[:n], scores[n:])


def reward_preference(model_score: float, reference_score: float) -> float | None:
    """1 when the model's reward is higher, 0 when lower, 0.5 when equal; None when either is not finite."""
    if not (math.isfinite(model_score) and math.isfinite(reference_score)):
        return None
    return 1.0 if model_score > reference_score else 0.0 if model_score < reference_score else 0.5


def judgments_from_scores(
    pairs: PairsToJudge, model_scores: Sequence[float], reference_scores: Sequence[float]
) -> pl.DataFrame:
    """The judge table from rewards already computed (see :func:`reward_as_judge`)."""
    n = _check_aligned(pairs=pairs.keys, model_scores=model_scores, reference_scores=reference_scores)
    preferences = [reward_preference(m, r) for m, r in zip(model_scores, reference_scores)]
    verdict_of = {1.0: "1", 0.0: "2", 0.5: "T", None: None}
    return _judgment_table(
        pairs,
        swapped=[False] * n,
        verdicts=[verdict_of[p] for p in preferences],
        preferences=preferences,
        texts=[""] * n,
    )
