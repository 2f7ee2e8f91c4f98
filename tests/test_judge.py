"""The pairwise judge: position swaps, prompts, verdict handling, and the reward model as a judge.

The judge LLM of the paper (a Qwen3 MoE) cannot run here. The real tiny policy runs through the whole
judge path (its babble has no verdict, so every judgment is unparseable and counted). To check swap
handling deterministically, :class:`ScriptedJudge` stands in for the judge's *text* only: it reads the
real judge prompt and answers as a judge with a known preference would.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from croco_pipeline.core.evaluation import judge as judge_module
from croco_pipeline.core.evaluation.judge import (
    JUDGE_TEMPLATE,
    PairsToJudge,
    judge_pairs,
    reward_as_judge,
    swap_flags,
)
from croco_pipeline.core.evaluation.win_rates import outcome_stats, verdict_outcomes
from croco_pipeline.core.models.generators import Completion, Generator, open_generator
from croco_pipeline.core.models.reward_scorers import open_reward_scorer
from croco_pipeline.core.sampling.config import SamplingConfig

MODEL_MARK = "MODEL-ANSWER"
REFERENCE_MARK = "REFERENCE-ANSWER"


class ScriptedJudge(Generator):
    """Answers each judge prompt with a fixed kind of text; records what it was asked.

    ``mode``: "prefers_model" (finds which slot holds the model's answer and votes for it, after restating
    the verdict format), "always_first" (a purely position-biased judge), "tie", or "garbage".
    """

    backend = "scripted"
    model = "scripted-judge"

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.calls: list[tuple[list[str], SamplingConfig]] = []

    def generate(self, prompts, sampling, adapter_path=None):
        self.calls.append((list(prompts), sampling))
        out = []
        for prompt in prompts:
            if self.mode == "prefers_model":
                answer_a = re.search(r"\[The Start of Assistant A's Answer\]\n(.*?)\n\[The End", prompt, re.S).group(1)
                verdict = "[[1]]" if MODEL_MARK in answer_a else "[[2]]"
                text = f"I must answer with [[1]], [[2]] or [[T]]. Having compared them: {verdict}"
            elif self.mode == "always_first":
                text = "Assistant A is better. [[1]]"
            elif self.mode == "tie":
                text = "Both are fine. [[T]]"
            else:
                text = "Assistant one wins, clearly."
            out.append([Completion(text=text, num_tokens=len(text.split()), finish_reason="stop")])
        return out

    def close(self) -> None:
        pass


def build_judge_prompts(questions, model_answers, reference_answers, languages, swaps, style="croco") -> list[str]:
    """``judge.build_judge_prompts`` of pairs given field by field (keys do not matter to prompts)."""
    pairs = PairsToJudge(questions, model_answers, reference_answers, languages, [f"k{i}" for i in range(len(swaps))])
    return judge_module.build_judge_prompts(pairs, swaps, style)


def _pairs(n: int) -> dict:
    return {
        "questions": [f"Question number {i}?" for i in range(n)],
        "model_answers": [f"{MODEL_MARK} {i} " + "x" * i for i in range(n)],
        "reference_answers": [f"{REFERENCE_MARK} {i}" for i in range(n)],
        "languages": ["en" if i % 2 else "da" for i in range(n)],
        "keys": [f"p{i:03d}/{'en' if i % 2 else 'da'}/0" for i in range(n)],
    }


# ----------------------------------------------------------------------------- swaps and prompts


def test_swap_flags_are_reproducible_and_order_independent() -> None:
    keys = [f"p{i:03d}/da/0" for i in range(200)]
    flags = swap_flags(keys, seed=7)
    assert flags == swap_flags(keys, seed=7)
    by_key = dict(zip(keys, flags))
    reordered = list(reversed(keys))[:50]
    assert swap_flags(reordered, seed=7) == [by_key[k] for k in reordered]
    assert swap_flags(keys, seed=8) != flags  # the seed matters


def test_swap_flags_are_a_fair_coin() -> None:
    flags = swap_flags([f"key-{i}" for i in range(4000)], seed=0)
    assert 0.47 < sum(flags) / len(flags) < 0.53


def test_build_judge_prompts_puts_the_model_answer_second_when_swapped() -> None:
    plain, swapped = build_judge_prompts(
        ["Q?", "Q?"], ["model says hi", "model says hi"], ["base says hi", "base says hi"], ["da", "da"], [False, True]
    )
    assert plain.index("model says hi") < plain.index("base says hi")
    assert swapped.index("base says hi") < swapped.index("model says hi")
    assert "Danish" in plain  # the judge is told the user's language
    assert plain.rstrip().endswith('"[[T]]" if they are equally good.')
    assert "{" not in plain  # every placeholder was filled


def test_build_judge_prompts_keeps_braces_in_answers_and_checks_lengths() -> None:
    (prompt,) = build_judge_prompts(["Q {0}?"], ["def f(): return {'a': 1}"], ["{}"], ["en"], [False])
    assert "return {'a': 1}" in prompt and "Q {0}?" in prompt
    with pytest.raises(ValueError, match="one entry per pair"):
        build_judge_prompts(["Q"], ["a", "b"], ["c"], ["en"], [False])


def test_template_asks_for_all_three_verdicts() -> None:
    for token in ("[[1]]", "[[2]]", "[[T]]"):
        assert token in JUDGE_TEMPLATE


PAPER_PROMPT_FOR_A_TRIPLE = """\
I need you to compare two responses to the same instruction. Please analyze both responses carefully and \
determine which one is better overall.
<instruction>Hvad er 2+2?</instruction>
<output_1>4</output_1>
<output_2>Fire {ikke fem}</output_2>
Compare the two outputs above. Consider helpfulness, relevance, accuracy, depth, creativity, and level of \
detail. Keep your analysis to at most 500 tokens. After your analysis, output your final verdict by strictly \
following this format: "[[1]]" if output_1 is better, "[[2]]" if output_2 is better, "[[T]]" if they are \
equally good. Your final line must be exactly one of: [[1]], [[2]], or [[T]]. Do NOT output any other text \
after your verdict."""


def test_paper_prompt_is_the_authors_text_for_a_given_triple() -> None:
    (unswapped, swapped) = build_judge_prompts(
        ["Hvad er 2+2?"] * 2, ["4"] * 2, ["Fire {ikke fem}"] * 2, ["da"] * 2, [False, True], "paper"
    )
    assert unswapped == PAPER_PROMPT_FOR_A_TRIPLE
    # swapped: the reference (base) answer is output_1
    assert "<output_1>Fire {ikke fem}</output_1>\n<output_2>4</output_2>" in swapped
    assert "Danish" not in unswapped and "language" not in unswapped  # no target-language criterion


def test_paper_prompt_without_ties_allows_only_two_verdicts() -> None:
    (prompt,) = build_judge_prompts(["Q"], ["a"], ["b"], ["en"], [False], "paper_no_ties")
    assert "[[T]]" not in prompt and "equally good" not in prompt
    assert prompt.endswith(
        '"[[1]]" if output_1 is better, "[[2]]" if output_2 is better. Your final line must be exactly one '
        "of: [[1]] or [[2]]. Do NOT output any other text after your verdict."
    )
    with pytest.raises(ValueError, match="unknown judge prompt"):
        build_judge_prompts(["Q"], ["a"], ["b"], ["en"], [False], "mt-bench")


# ----------------------------------------------------------------------------- verdict handling


def test_judge_that_prefers_the_model_gives_full_wins_whatever_the_order() -> None:
    pairs = _pairs(40)
    judge = ScriptedJudge("prefers_model")
    frame = judge_pairs(judge, PairsToJudge(**pairs), seed=3)
    swaps = swap_flags(pairs["keys"], 3)
    assert 5 < sum(swaps) < 35  # both orders occur
    assert frame["swapped"].to_list() == swaps
    # the verdict names the slot the model's answer was in; the preference undoes the swap
    assert frame["verdict"].to_list() == ["2" if s else "1" for s in swaps]
    assert frame["preference"].to_list() == [1.0] * 40
    assert frame["model_length"].to_list() == [len(a) for a in pairs["model_answers"]]
    assert frame["reference_length"].to_list() == [len(a) for a in pairs["reference_answers"]]
    assert frame.columns == [
        "key",
        "language",
        "swapped",
        "verdict",
        "preference",
        "judge_text",
        "model_length",
        "reference_length",
    ]
    ((prompts, sampling),) = judge.calls
    assert sampling.n == 1 and sampling.temperature == 0.7 and sampling.max_new_tokens == 512


def test_position_biased_judge_wins_only_the_unswapped_pairs() -> None:
    pairs = _pairs(40)
    frame = judge_pairs(ScriptedJudge("always_first"), PairsToJudge(**pairs), seed=3)
    assert frame["preference"].to_list() == [0.0 if s else 1.0 for s in frame["swapped"].to_list()]


def test_ties_and_unparseable_verdicts() -> None:
    pairs = _pairs(6)
    ties = judge_pairs(ScriptedJudge("tie"), PairsToJudge(**pairs))
    assert ties["verdict"].to_list() == ["T"] * 6 and ties["preference"].to_list() == [0.5] * 6
    garbage = judge_pairs(ScriptedJudge("garbage"), PairsToJudge(**pairs))
    assert garbage["verdict"].null_count() == 6 and garbage["preference"].null_count() == 6
    assert garbage["judge_text"].to_list() == ["Assistant one wins, clearly."] * 6


def test_judge_pairs_rejects_duplicate_keys() -> None:
    pairs = _pairs(3)
    pairs["keys"] = ["same", "same", "other"]
    with pytest.raises(ValueError, match="duplicate key 'same'"):
        judge_pairs(ScriptedJudge("tie"), PairsToJudge(**pairs))


def _statistics(judgments: pl.DataFrame) -> dict:
    """What the evaluation assets compute from judgments (``summarize_system``): counts, unparseable
    verdicts (excluded and counted) and the win rates of the parseable ones."""
    return outcome_stats(
        verdict_outcomes(judgments["verdict"], judgments["swapped"]),
        judgments["model_length"].to_list(),
        judgments["reference_length"].to_list(),
    )


def test_statistics_count_unparseable_and_compute_win_rates() -> None:
    pairs = _pairs(8)
    frame = pl.concat(
        [
            judge_pairs(ScriptedJudge("prefers_model"), PairsToJudge(**pairs)),
            judge_pairs(
                ScriptedJudge("garbage"), PairsToJudge(**{**pairs, "keys": [k + "/again" for k in pairs["keys"]]})
            ),
        ]
    )
    every, danish = _statistics(frame), _statistics(frame.filter(pl.col("language") == "da"))
    assert every["n_judgments"] == 16
    assert every["unparseable"] == 8
    assert every["n_judged"] == 8 and every["wins"] == 8
    assert every["win_rate"] == pytest.approx(100.0)
    assert danish["n_judgments"] == 8 and danish["unparseable"] == 4


def test_tiny_policy_as_judge_gives_only_unparseable_verdicts(tiny_policy_path: Path) -> None:
    """The real generation path: a tiny random model cannot produce a verdict, and that is counted."""
    pairs = _pairs(4)
    with open_generator(str(tiny_policy_path), "transformers") as generator:
        frame = judge_pairs(generator, PairsToJudge(**pairs), seed=1, max_new_tokens=12)
    assert frame.height == 4
    assert frame["verdict"].null_count() == 4 and frame["preference"].null_count() == 4
    assert all(text.strip() == "" or "[[" not in text for text in frame["judge_text"].to_list())
    summary = _statistics(frame)
    assert summary["unparseable"] == 4 and summary["n_judged"] == 0 and summary["win_rate"] is None


# ----------------------------------------------------------------------------- reward model as judge


def test_reward_as_judge_with_the_language_fidelity_scorer() -> None:
    scorer = open_reward_scorer("language_fidelity")
    danish = "Hovedstaden i Danmark er København, som ligger på Sjælland og er landets største by."
    english = "The capital of Denmark is Copenhagen, which lies on Zealand and is the largest city."
    frame = reward_as_judge(
        scorer,
        PairsToJudge(
            questions=["Hvad er Danmarks hovedstad?"] * 3,
            model_answers=[danish, english, danish],
            reference_answers=[english, danish, danish],
            languages=["da"] * 3,
            keys=["a", "b", "c"],
        ),
    )
    assert frame["preference"].to_list() == [1.0, 0.0, 0.5]
    assert frame["verdict"].to_list() == ["1", "2", "T"]
    assert frame["swapped"].to_list() == [False] * 3 and frame["judge_text"].to_list() == [""] * 3
    assert frame["model_length"].to_list() == [len(danish), len(english), len(danish)]
