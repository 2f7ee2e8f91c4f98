"""A shared vLLM engine (``croco demo``'s one engine per model) serving a tuned model merged in place.

A module of its own so that its engine is the only one of this process and runs inside it (a few
seconds to start on 2 cores) rather than in processes of its own beside test_generation.py's engine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_generation import GREEDY, OPEN_KW, PROMPTS

from croco_pipeline.core.models.generators import open_generator


def test_a_shared_vllm_engine_serves_a_merged_adapter_in_place_and_gets_its_base_weights_back(
    tiny_policy_path: Path, tiny_lora_adapter_path: Path
) -> None:
    """``croco demo`` keeps one engine per model: a tuned model is served merged by loading its weights into
    that engine (no second engine start), and the base weights are back for the next step, even when the
    step using the tuned model fails."""
    from croco_pipeline.core.models import lifetime

    adapter = str(tiny_lora_adapter_path)
    options = {key: value for key, value in OPEN_KW.items() if key != "enable_lora"}
    with open_generator(str(tiny_policy_path), "transformers", **OPEN_KW) as transformers_generator:
        tuned_answers = transformers_generator.generate(PROMPTS, GREEDY, adapter_path=adapter)
        plain_answers = transformers_generator.generate(PROMPTS, GREEDY)
    try:
        base = lifetime.open_policy_generator(str(tiny_policy_path), keep_loaded=True, backend="vllm", **options)
        base_answers = base.generate(PROMPTS, GREEDY)
        assert base_answers == plain_answers
        with lifetime.open_adapter_generator(
            str(tiny_policy_path), adapter, serving="merged", keep_loaded=True, backend="vllm", **options
        ) as tuned:
            assert tuned.generate(PROMPTS, GREEDY, adapter_path=adapter) == tuned_answers
            assert tuned._inner in lifetime._SHARED_GENERATORS.values(), "borrowed, not a second engine"
            with pytest.raises(RuntimeError, match="serves the weights in"):
                base.generate(PROMPTS, GREEDY)  # the base is not silently answered by the tuned weights
        assert len(lifetime._SHARED_GENERATORS) == 1
        assert base.generate(PROMPTS, GREEDY) == base_answers

        with pytest.raises(ValueError, match="serves the merged adapter"):
            with lifetime.open_adapter_generator(
                str(tiny_policy_path), adapter, serving="merged", keep_loaded=True, backend="vllm", **options
            ) as tuned:
                tuned.generate(PROMPTS, GREEDY, adapter_path=str(tiny_policy_path))
        assert base.generate(PROMPTS, GREEDY) == base_answers
    finally:
        lifetime.close_shared_generators()
