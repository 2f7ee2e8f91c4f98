"""The `paper` profile reproduces the authors' protocol (docs/paper_protocol.md), while the laptop and test
profiles keep their own behaviour. Only settings are built here: no model is loaded."""

from __future__ import annotations

import pytest

from croco_pipeline.core.sampling.config import SamplingConfig
from croco_pipeline.definitions import build_resources


@pytest.fixture(scope="module")
def paper() -> dict:
    return build_resources("paper", {})


def test_judged_answers_are_decoded_greedily_with_8192_new_tokens(paper) -> None:
    settings = paper["settings"]
    assert settings.eval_sampling() == SamplingConfig(n=1, temperature=0.0, top_p=1.0, max_new_tokens=8192, seed=43)
    # training samples stay as the paper drew them
    assert settings.sampling() == SamplingConfig(n=64, temperature=1.0, top_p=1.0, max_new_tokens=4096, seed=42)
    # the policy takes its own context length; a prompt without room for 8192 new tokens is refused
    assert paper["policy"].max_model_len is None
    # the laptop profile still answers held-out prompts as it samples (temperature 1, 64 tokens)
    embedded = build_resources("embedded", {})["settings"]
    assert embedded.eval_sampling() == SamplingConfig(n=4, temperature=1.0, top_p=1.0, max_new_tokens=64, seed=1)


def test_the_paper_judge(paper) -> None:
    settings, judge = paper["settings"], paper["judge_model"]
    assert (settings.judge, settings.judge_prompt, settings.tie_handling) == ("llm", "paper", "half")
    assert (settings.judge_temperature, settings.judge_max_new_tokens) == (0.7, 4096)
    assert (judge.model, judge.max_model_len) == ("Qwen/Qwen3.6-35B-A3B", 32768)
    embedded = build_resources("embedded", {})["settings"]
    assert (embedded.judge, embedded.judge_prompt, embedded.judge_max_new_tokens) == ("reward", "croco", 512)


def test_over_long_conversations_are_dropped_not_truncated(paper) -> None:
    reward = paper["reward"]
    assert (reward.model, reward.max_length, reward.overflow) == ("Skywork/Skywork-Reward-V2-Qwen3-8B", 32768, "skip")
    assert build_resources("tiny", {})["reward"].overflow == "truncate"


def test_the_paper_translation(paper) -> None:
    settings, translator = paper["settings"], paper["translator"]
    assert translator.model == "Infomaniak-AI/vllm-translategemma-27b-it"
    assert settings.translation_style == "translategemma_vllm"
    assert (settings.translation_max_new_tokens, settings.translation_max_input_tokens) == (8192, 8192)
    assert settings.translation_language_filter is False
    embedded = build_resources("embedded", {})["settings"]
    assert (embedded.translation_style, embedded.translation_language_filter) == ("instruction", True)
    assert embedded.translation_max_input_tokens is None


def test_the_paper_pools_the_high_resource_group_in_its_order(paper) -> None:
    assert paper["settings"].cross_language_languages == ["da", "nl", "en", "fr", "de", "it", "es"]
    assert build_resources("embedded", {})["settings"].cross_language_languages is None


def test_a_language_the_laptop_model_rarely_answers_in_gets_more_samples(paper) -> None:
    embedded = build_resources("embedded", {})["settings"]
    assert [embedded.sampling(code).n for code in ("da", "cy", "mt", "no")] == [16, 16, 32, 32]
    assert embedded.sampling().n == 16  # a language without an entry
    # the budget is the embedded profile's, not a schema default: the paper samples 64 in every language
    assert {paper["settings"].sampling(code).n for code in ("da", "mt", "no")} == {64}
    assert build_resources("tiny", {})["settings"].sampling("mt").n == 3


def test_a_per_language_budget_is_set_from_the_command_line_and_checked() -> None:
    from croco_pipeline.core.settings import parse_assignments
    from croco_pipeline.resources.settings import PipelineSettings

    assert parse_assignments(PipelineSettings, ['samples_per_prompt_by_language={"ga": 24}']) == {
        "samples_per_prompt_by_language": {"ga": 24}
    }
    with pytest.raises(ValueError, match="samples_per_prompt_by_language.*greater than 0"):
        parse_assignments(PipelineSettings, ['samples_per_prompt_by_language={"ga": 0}'])
