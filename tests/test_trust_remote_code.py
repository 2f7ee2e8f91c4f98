"""A model repository's own Python code never runs unless a setting asks for it (``trust_remote_code``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from croco_pipeline.core.models import generators, reward_scorers
from croco_pipeline.core.settings import PolicySettings, RewardSettings
from croco_pipeline.profiles import PROFILES, resource_config

MARKER_CODE = """
from pathlib import Path
Path({marker!r}).touch()  # what any code shipped with a model could do
from transformers import LlamaConfig


class CustomConfig(LlamaConfig):
    model_type = "croco_custom"
"""


def test_it_is_off_in_every_schema_and_profile():
    assert PolicySettings().trust_remote_code is False and RewardSettings().trust_remote_code is False
    assert PolicySettings().generator_options(seed=0)["trust_remote_code"] is False
    assert RewardSettings().scorer_options()["trust_remote_code"] is False
    for profile in PROFILES:
        config = resource_config(profile, environ={})
        for section in ("policy", "judge_model", "translator", "reward"):
            assert config[section].get("trust_remote_code", False) is False, (profile, section)
    assert "runs as your user" in PolicySettings.model_fields["trust_remote_code"].description


@pytest.fixture
def custom_code_model(tmp_path, tiny_policy_path) -> tuple[Path, Path]:
    """The tiny policy, but its config names code shipped in the folder; that code leaves a marker file."""
    folder = tmp_path / "custom-code-model"
    shutil.copytree(tiny_policy_path, folder)
    marker = tmp_path / "the-models-code-ran"
    (folder / "configuration_custom.py").write_text(MARKER_CODE.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="croco_custom", auto_map={"AutoConfig": "configuration_custom.CustomConfig"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


def test_a_model_that_ships_code_is_refused_and_its_code_never_runs(custom_code_model):
    folder, marker = custom_code_model
    with pytest.raises(ValueError, match="trust_remote_code"):
        generators.open_generator(str(folder), backend="transformers", max_model_len=64)
    assert not marker.exists()


def test_the_setting_reaches_every_loader(monkeypatch, tiny_policy_path, tiny_reward_model_path):
    """True when asked for, False otherwise: the transformers generator, vLLM and the reward model."""
    seen: list[tuple[str, bool]] = []

    def recording(name, real):
        def load(*args, **kwargs):
            seen.append((name, kwargs.get("trust_remote_code")))
            return real(*args, **kwargs)

        return load

    import transformers

    for cls in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        monkeypatch.setattr(cls, "from_pretrained", recording(cls.__name__, cls.from_pretrained))
    monkeypatch.setattr(
        transformers.AutoModelForSequenceClassification,
        "from_pretrained",
        recording(
            "AutoModelForSequenceClassification", transformers.AutoModelForSequenceClassification.from_pretrained
        ),
    )
    for trust in (False, True):
        seen.clear()
        generators.open_generator(
            str(tiny_policy_path), backend="transformers", max_model_len=64, trust_remote_code=trust
        ).close()
        reward_scorers.open_reward_scorer(
            "sequence_classifier", str(tiny_reward_model_path), trust_remote_code=trust
        ).close()
        assert {name for name, _ in seen} == {
            "AutoTokenizer",
            "AutoModelForCausalLM",
            "AutoModelForSequenceClassification",
        }
        assert {value for _, value in seen} == {trust}

    if not generators.vllm_available():
        return
    import vllm

    class Refused(Exception):
        pass

    def fake_llm(**kwargs):
        seen.append(("vllm.LLM", kwargs.get("trust_remote_code")))
        raise Refused

    monkeypatch.setattr(vllm, "LLM", fake_llm)
    for trust in (False, True):
        seen.clear()
        with pytest.raises(Refused):
            generators.open_generator(str(tiny_policy_path), backend="vllm", trust_remote_code=trust)
        assert seen == [("vllm.LLM", trust)]
