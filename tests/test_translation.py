"""Machine translation of prompts: request format, refusal rules, user translations first."""

import polars as pl

from croco_pipeline.core.models.generators import open_generator
from croco_pipeline.core.prompts.translation import (
    merge_user_and_machine,
    translate_prompts,
    translation_request,
    uses_chat_template,
)


def test_translategemma_request_names_both_languages_and_keeps_two_blank_lines():
    request = translation_request("Hello there.", "en", "mt", "translategemma")
    assert request.startswith("You are a professional English (en) to Maltese (mt) translator.")
    assert request.endswith("into Maltese:\n\n\nHello there.")
    assert "into Welsh" in translation_request("Hi", "en", "cy", "instruction")


def test_untranslated_or_empty_answers_are_refused_and_counted(tiny_policy_path):
    english = pl.DataFrame(
        {"prompt_id": ["a", "b"], "split": ["train", "heldout"], "prompt": ["Good morning.", "Thank you."]}
    )
    with open_generator(str(tiny_policy_path), backend="transformers") as generator:
        accepted, refused = translate_prompts(generator, english, "fi", max_new_tokens=8)
    # the tiny model babbles English/Danish/Dutch/French words, never Finnish
    assert accepted.is_empty()
    assert sorted(refused["prompt_id"]) == ["a", "b"]
    assert set(refused["reason"]) <= {"wrong_language", "empty"}


def test_user_translations_win():
    user = pl.DataFrame(
        {
            "prompt_id": ["a"],
            "language": ["fi"],
            "split": ["train"],
            "prompt": ["Hyvää huomenta."],
            "source": ["mine.jsonl"],
        }
    )
    machine = pl.DataFrame(
        {
            "prompt_id": ["a", "b"],
            "language": ["fi", "fi"],
            "split": ["train", "train"],
            "prompt": ["Huomenta.", "Kiitos."],
            "source": ["machine-translated by m"] * 2,
        }
    )
    merged = merge_user_and_machine(user, machine)
    assert merged.select("prompt_id", "prompt", "source").rows() == [
        ("a", "Hyvää huomenta.", "mine.jsonl"),
        ("b", "Kiitos.", "machine-translated by m"),
    ]
    assert merge_user_and_machine(None, machine).height == 2


def test_paper_translategemma_vllm_request_and_completion_prompt():
    assert translation_request("Hello there.", "en", "mt", "translategemma_vllm") == (
        "<<<source>>>en<<<target>>>mt<<<text>>>Hello there."
    )
    assert translation_request("Hello there.", "en", "da", "completion") == (
        "Translate the following English source text to Danish:\nEnglish: Hello there.\nDanish: "
    )
    assert uses_chat_template("translategemma_vllm") and not uses_chat_template("completion")


def test_over_long_inputs_are_dropped_and_counted_and_the_language_filter_is_optional(tiny_policy_path):
    english = pl.DataFrame(
        {"prompt_id": ["a", "b"], "split": ["train", "train"], "prompt": ["Good morning.", "word " * 200]}
    )
    with open_generator(str(tiny_policy_path), backend="transformers") as generator:
        lengths = generator.prompt_lengths(
            [translation_request(text, "en", "fi", "completion") for text in english["prompt"]], chat_template=False
        )
        assert lengths[0] < 40 < lengths[1]
        accepted, refused = translate_prompts(
            generator,
            english,
            "fi",
            style="completion",
            max_new_tokens=4,
            max_input_tokens=40,
            language_filter=False,
        )
    # "b" is never sent; without the language filter the tiny model's non-Finnish answer to "a" is kept
    assert refused.select("prompt_id", "reason").rows() == [("b", "too_long")]
    assert accepted["prompt_id"].to_list() == ["a"] and accepted["prompt"][0].strip()
