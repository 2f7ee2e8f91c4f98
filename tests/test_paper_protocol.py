"""docs/paper_protocol.md is true of the code: every `key` = `value` cell of its step-by-step table is
checked against the `paper` profile (settings, model resources) and its training presets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from croco_pipeline.definitions import build_resources

PROTOCOL = Path(__file__).resolve().parents[1] / "docs" / "paper_protocol.md"
CLAIM = re.compile(r"`((?:settings|policy|reward|translator|judge_model|DPOSettings|SFTSettings|LoraSettings)\.\w+)`"
                   r" = `([^`]*)`")  # fmt: skip


def claims() -> list[tuple[str, str, str]]:
    """(row's step, key, value) for every checked cell of the step-by-step table."""
    text = PROTOCOL.read_text()
    table = text[text.index("## Step by step") : text.index("## Deviations kept on purpose")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| step")]
    return [
        (row.split("|")[1].strip(), key, value) for row in rows for key, value in CLAIM.findall(row.split("|")[-2])
    ]


def test_the_table_states_settings_for_every_step_that_has_one() -> None:
    found = claims()
    assert len(found) >= 50
    assert {key.split(".")[0] for _, key, _ in found} >= {"settings", "policy", "reward", "translator", "DPOSettings"}


@pytest.mark.parametrize("step, key, value", claims())
def test_each_row_is_true_of_the_paper_profile(step: str, key: str, value: str) -> None:
    resources = build_resources("paper", {})
    settings = resources["settings"]
    owner, field = key.split(".")
    subject = {
        "settings": settings,
        "policy": resources["policy"],
        "reward": resources["reward"],
        "translator": resources["translator"],
        "judge_model": resources["judge_model"],
        "DPOSettings": settings.dpo_settings(),
        "SFTSettings": settings.sft_settings(),
        "LoraSettings": settings.dpo_settings().lora,
    }[owner]
    try:
        expected = json.loads(value)
    except json.JSONDecodeError:
        expected = value  # a bare word: a string setting
    actual = getattr(subject, field)
    if isinstance(expected, float) or isinstance(actual, float):
        assert actual == pytest.approx(expected), (step, key)
    else:
        assert actual == expected, (step, key)
