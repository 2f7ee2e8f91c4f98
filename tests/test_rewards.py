"""Reward scorers: the tiny sequence-classifier reward model and the language-fidelity demo scorer."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from croco_pipeline.core.models.reward_scorers import (
    LanguageFidelityScorer,
    SequenceClassifierScorer,
    open_reward_scorer,
    repeated_trigram_share,
)
from croco_pipeline.core.models.specs import ModelNotFoundError

DANISH = "København er Danmarks hovedstad. Byen ligger på Sjælland, og der bor omkring en million mennesker."
ENGLISH = "Copenhagen is the capital of Denmark. The city lies on Zealand and about a million people live there."


# --- sequence classifier (any Hugging Face reward model) ---------------------------------------------


@pytest.fixture(scope="module")
def reward_scorer(tiny_reward_model_path: Path):
    with open_reward_scorer("sequence_classifier", str(tiny_reward_model_path), max_length=128, batch_size=2) as s:
        yield s


def test_scores_are_deterministic_raw_logits_independent_of_batching(reward_scorer: SequenceClassifierScorer) -> None:
    prompts = ["Hi", "What is the capital of Denmark?", "Tell me a joke."]
    responses = ["Hello!", DANISH, "Why did the chicken cross the road? To get to the other side."]
    batch = reward_scorer.score(prompts, responses, ["en", "da", "en"])
    again = reward_scorer.score(prompts, responses, ["en", "da", "en"])
    one_by_one = [reward_scorer.score([p], [r], ["en"]).scores[0] for p, r in zip(prompts, responses)]

    assert reward_scorer.name == str(Path(reward_scorer.model_path))
    assert batch.scores == again.scores
    assert batch.scores == pytest.approx(one_by_one, abs=1e-4)  # padding does not change a score
    assert not any(batch.truncated) and not any(batch.skipped)
    # Raw logits, no sigmoid: the tiny model's scores lie well outside [0, 1].
    assert any(not 0.0 <= s <= 1.0 for s in batch.scores)
    assert len(set(batch.scores)) == 3


def test_the_conversation_uses_the_reward_models_chat_template(reward_scorer: SequenceClassifierScorer) -> None:
    text = reward_scorer._tokenizer.decode(reward_scorer.encode("Hi", "Hello!"))
    assert text.count("<|im_start|>") == 3  # system, user, assistant: no BOS dropped or doubled
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n")


def test_long_conversations_are_truncated_and_flagged(reward_scorer: SequenceClassifierScorer) -> None:
    long = "word " * 200  # far beyond max_length=128 tokens
    batch = reward_scorer.score(["Hi", "Hi"], ["Hello!", long], ["en", "en"])
    assert batch.truncated == [False, True]
    assert batch.skipped == [False, False]
    assert all(math.isfinite(s) for s in batch.scores)


def test_long_conversations_can_be_skipped_instead(tiny_reward_model_path: Path) -> None:
    with open_reward_scorer(
        "sequence_classifier", str(tiny_reward_model_path), max_length=64, overflow="skip"
    ) as scorer:
        batch = scorer.score(["Hi", "Hi", "Hi"], ["Hello!", "word " * 200, "Hey"], ["en"] * 3)
    assert batch.skipped == [False, True, False]
    assert batch.truncated == [False, False, False]
    assert math.isnan(batch.scores[1])
    assert math.isfinite(batch.scores[0]) and math.isfinite(batch.scores[2])


def test_sequence_classifier_errors(tmp_path: Path, reward_scorer: SequenceClassifierScorer) -> None:
    with pytest.raises(ValueError, match="needs a model"):
        open_reward_scorer("sequence_classifier")
    with pytest.raises(ModelNotFoundError, match="missing-rm"):
        open_reward_scorer("sequence_classifier", str(tmp_path / "missing-rm"))
    with pytest.raises(ValueError, match="equal length"):
        reward_scorer.score(["a", "b"], ["x"], ["en", "en"])


def test_close_releases_the_model(tiny_reward_model_path: Path) -> None:
    scorer = SequenceClassifierScorer(str(tiny_reward_model_path))
    scorer.close()
    scorer.close()
    with pytest.raises(RuntimeError, match="closed"):
        scorer.score(["a"], ["b"], ["en"])


# --- language-fidelity demo scorer ------------------------------------------------------------------


def test_fidelity_prefers_the_target_language() -> None:
    scorer = open_reward_scorer("language_fidelity")
    assert isinstance(scorer, LanguageFidelityScorer)
    assert scorer.name == "language-fidelity-demo"
    da, en = scorer.score(["Hvad er Danmarks hovedstad?"] * 2, [DANISH, ENGLISH], ["da", "da"]).scores
    assert da > 0.5 > en
    # ... and the other way round for an English prompt.
    da_for_en, en_for_en = scorer.score(["p", "p"], [DANISH, ENGLISH], ["en", "en"]).scores
    assert en_for_en > da_for_en


def test_fidelity_penalties() -> None:
    scorer = LanguageFidelityScorer()
    clean = scorer.score_one(DANISH, "da")
    assert scorer.score_one("", "da") == -1.0
    assert scorer.score_one("  \n\t ", "da") == -1.0
    assert scorer.score_one(DANISH, "da", "length") == pytest.approx(clean - 0.2)
    looping = " ".join(["Byen ligger på Sjælland."] * 8)
    assert scorer.score_one(looping, "da") < clean - 0.3
    assert scorer.score_one("Ja.", "da") < clean
    batch = scorer.score(["p"] * 3, [DANISH, "", DANISH], ["da"] * 3, ["stop", "stop", "length"])
    assert batch.scores[0] > batch.scores[2] > batch.scores[1]
    assert batch.truncated == batch.skipped == [False, False, False]


def test_fidelity_scores_spread_over_a_pool_of_samples() -> None:
    samples = [
        DANISH,
        "Hovedstaden er København.",
        "København. The capital is Copenhagen.",
        "Copenhagen, of course!",
        "Det er København, som ligger på Sjælland.",
    ]
    scores = LanguageFidelityScorer().score(["p"] * len(samples), samples, ["da"] * len(samples)).scores
    assert len(set(scores)) == len(samples)
    assert max(scores) - min(scores) > 0.5


def test_repeated_trigram_share() -> None:
    assert repeated_trigram_share("a b".split()) == 0.0
    assert repeated_trigram_share("one two three four".split()) == 0.0
    assert repeated_trigram_share("a b c a b c a b c".split()) == pytest.approx(4 / 7)


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="Unknown reward backend"):
        open_reward_scorer("sigmoid")  # type: ignore[arg-type]


def test_the_reward_model_sees_the_prompt_the_policy_saw(reward_scorer: SequenceClassifierScorer) -> None:
    import polars as pl

    from croco_pipeline.core.prompts.sets import format_user_prompt
    from croco_pipeline.core.sampling.scoring import add_rewards

    samples = pl.DataFrame(
        {
            "prompt": ["Hvad er hovedstaden i Danmark?"],
            "response": [DANISH],
            "language": ["da"],
            "finish_reason": ["stop"],
        }
    )
    with_suffix = add_rewards(samples, reward_scorer, respond_in_language=True)["reward"][0]
    seen = format_user_prompt(samples["prompt"][0], "da", True)
    assert seen.endswith(" Please respond in Danish and nothing else.")
    assert with_suffix == pytest.approx(reward_scorer.score([seen], [DANISH], ["da"]).scores[0], abs=1e-6)
    without = add_rewards(samples, reward_scorer)["reward"][0]
    assert without == pytest.approx(reward_scorer.score([samples["prompt"][0]], [DANISH], ["da"]).scores[0], abs=1e-6)
    assert with_suffix != pytest.approx(without, abs=1e-6)
