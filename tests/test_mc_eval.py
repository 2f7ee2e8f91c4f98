"""Multiple-choice evaluation by log-likelihood: task files, scoring on real models, Wilson intervals."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from croco_pipeline.core.evaluation.multiple_choice import (
    MCDataError,
    accuracy_with_ci,
    load_mc_tasks,
    mc_languages,
    mc_summary,
    score_choices,
    wilson_interval,
)

# ----------------------------------------------------------------------------- task files


def test_every_shipped_language_loads_48_valid_questions() -> None:
    languages = mc_languages()
    assert "en" in languages and len(languages) >= 4
    for language in languages:
        tasks = load_mc_tasks(language)
        assert tasks.height == 48, language
        assert tasks.columns == ["question_id", "language", "question", "choices", "answer"]
        assert tasks["choices"].list.len().to_list() == [4] * 48
        assert tasks["answer"].is_between(0, 3).all()
        assert tasks["language"].unique().to_list() == [language]
    # translations share question ids, so results can be compared question by question
    assert set(load_mc_tasks("en")["question_id"]) == set(load_mc_tasks(languages[0])["question_id"])


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    return path


GOOD = {"question_id": "q1", "question": "2 + 2?", "choices": ["3", "4", "5", "22"], "answer": 1}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"answer": 4}, r"answer must be the index of the right choice \(0..3\), got 4"),
        ({"answer": True}, "answer must be the index"),
        ({"choices": ["a", "b", "c"]}, "choices must be a list of 4 non-empty strings"),
        ({"choices": ["a", "a", "b", "c"]}, "choices must be distinct"),
        ({"question": "  "}, "question must be a non-empty string"),
    ],
)
def test_invalid_rows_are_named_with_file_and_line(tmp_path: Path, change: dict, message: str) -> None:
    path = _write(tmp_path / "mc.jsonl", [GOOD, {**GOOD, "question_id": "q2", **change}])
    with pytest.raises(MCDataError, match=message) as info:
        load_mc_tasks("en", path)
    assert f"{path}, line 2" in str(info.value)


def test_missing_fields_duplicates_and_unknown_languages(tmp_path: Path) -> None:
    with pytest.raises(MCDataError, match="line 1: missing answer"):
        load_mc_tasks("en", _write(tmp_path / "a.jsonl", [{k: v for k, v in GOOD.items() if k != "answer"}]))
    with pytest.raises(MCDataError, match="duplicate question_id 'q1'"):
        load_mc_tasks("en", _write(tmp_path / "b.jsonl", [GOOD, GOOD]))
    with pytest.raises(MCDataError, match="not found"):
        load_mc_tasks("en", tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="Unknown language code 'xx'"):
        load_mc_tasks("xx")


# ----------------------------------------------------------------------------- Wilson interval


def test_wilson_interval_matches_hand_computed_values() -> None:
    # 8 of 10, z = 1.959964: centre (0.8 + z²/20) / (1 + z²/10) = 0.71674, half-width 0.22658
    accuracy, low, high = accuracy_with_ci([True] * 8 + [False] * 2)
    assert accuracy == 0.8
    assert low == pytest.approx(0.49016, abs=1e-5)
    assert high == pytest.approx(0.94332, abs=1e-5)
    # 0 of 10: the interval starts at 0 and ends at z²/(n + z²) = 0.27753
    assert accuracy_with_ci([False] * 10) == pytest.approx((0.0, 0.0, 0.27753), abs=1e-5)
    # 10 of 10 mirrors it
    assert accuracy_with_ci([True] * 10) == pytest.approx((1.0, 0.72247, 1.0), abs=1e-5)
    # 90 % confidence, z = 1.644854, 1 of 2: centre 0.5, half-width z·√(1/8 + z²/16) / (1 + z²/2) = 0.37913
    assert wilson_interval(1, 2, confidence=0.90) == pytest.approx((0.12087, 0.87913), abs=1e-5)


def test_wilson_interval_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no answers"):
        accuracy_with_ci([])
    with pytest.raises(ValueError, match="confidence must lie strictly between 0 and 1"):
        wilson_interval(1, 2, confidence=1.0)
    with pytest.raises(ValueError, match=r"successes must lie in \[0, n=2\]"):
        wilson_interval(3, 2)


# ----------------------------------------------------------------------------- scoring on real models


def test_score_choices_on_the_tiny_policy(tiny_policy_path: Path) -> None:
    tasks = load_mc_tasks("en").head(6)
    scored = score_choices(str(tiny_policy_path), tasks, batch_size=4)
    assert scored.height == 6
    assert scored["question_id"].to_list() == tasks["question_id"].to_list()
    assert scored["predicted"].is_between(0, 3).all()
    assert scored["correct"].to_list() == (scored["predicted"] == scored["answer"]).to_list()
    for loglik, tokens, score in zip(scored["loglik"], scored["num_tokens"], scored["score"]):
        assert len(loglik) == len(tokens) == len(score) == 4
        assert all(value < 0 for value in loglik) and all(n >= 1 for n in tokens)
        assert score.to_list() == pytest.approx(
            [total / n for total, n in zip(loglik, tokens)]
        )  # "mean" is the default
    # batching does not change the numbers
    one_by_one = score_choices(str(tiny_policy_path), tasks, batch_size=1)
    for a, b in zip(scored["loglik"], one_by_one["loglik"]):
        assert a.to_list() == pytest.approx(b.to_list(), abs=1e-4)
    summed = score_choices(str(tiny_policy_path), tasks, normalize="sum")
    for score, loglik in zip(summed["score"], summed["loglik"]):
        assert score.to_list() == pytest.approx(loglik.to_list(), abs=1e-4)


def test_scores_equal_the_log_likelihood_of_each_whole_sequence(tiny_policy_path: Path) -> None:
    """The shared template prefix, the key/value caches and the LM head on choice tokens only are
    shortcuts: each score equals log P(choice | templated question) from one plain forward pass over
    the whole sequence."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tasks = load_mc_tasks("ga").head(5)
    scored = score_choices(str(tiny_policy_path), tasks, batch_size=3)
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_policy_path, dtype=torch.float32).eval()
    for question, choices, logliks in zip(tasks["question"], tasks["choices"], scored["loglik"]):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
        for choice, loglik in zip(choices, logliks):
            answer = tokenizer(choice, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([prompt + answer])).logits[0].float()
            logprobs = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
            expected = logprobs.gather(-1, torch.tensor(answer)[:, None]).sum().item()
            assert loglik == pytest.approx(expected, abs=1e-3)


def test_a_choice_the_model_would_say_wins(tiny_policy_path: Path) -> None:
    """The tiny policy only says words from its word list, so a choice made of them is far likelier."""
    tasks = pl.DataFrame(
        {
            "question_id": ["q1", "q2"],
            "question": ["Say something.", "Say something else."],
            "choices": [
                ["Xylophone quartz", " the cat is good", "Zebra", "Quixotic"],
                ["Zyzzyva", "Krypton", "Jukebox", " the sun"],
            ],
            "answer": [1, 3],
        }
    )
    scored = score_choices(str(tiny_policy_path), tasks)
    assert scored["predicted"].to_list() == [1, 3]
    assert scored["correct"].all()


def test_an_adapter_changes_the_scores(tiny_policy_path: Path, tiny_lora_adapter_path: Path) -> None:
    tasks = load_mc_tasks("en").head(3)
    base = score_choices(str(tiny_policy_path), tasks)
    adapted = score_choices(str(tiny_policy_path), tasks, adapter_path=str(tiny_lora_adapter_path))
    flat = lambda frame: frame["loglik"].explode().to_list()  # noqa: E731
    assert flat(base) != pytest.approx(flat(adapted), abs=1e-3)


def test_score_choices_rejects_bad_arguments(tiny_policy_path: Path) -> None:
    tasks = load_mc_tasks("en").head(1)
    with pytest.raises(ValueError, match="normalize must be 'mean' or 'sum'"):
        score_choices(str(tiny_policy_path), tasks, normalize="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"tasks lack column\(s\) \['answer'\]"):
        score_choices(str(tiny_policy_path), tasks.drop("answer"))


def test_smollm2_is_clearly_above_chance_in_english(embedded_policy_path: Path) -> None:
    """SmolLM2-135M-Instruct on the 48 English questions (measured: 29/48 = 60 % with summed
    log-likelihoods, 24/48 = 50 % with per-token means; chance is 25 %)."""
    scored = score_choices(str(embedded_policy_path), load_mc_tasks("en"), normalize="sum")
    summary = mc_summary(scored)
    assert summary["n"] == 48
    assert summary["accuracy"] > 0.40
    assert summary["ci_low"] > 0.25  # the whole 95 % interval is above chance
