"""Shared test fixtures. Models are built once per test session; nothing is downloaded.

* ``CROCO_CACHE`` defaults to ``<repo>/.croco_cache`` (git-ignored), so the embedded SmolLM2
  conversion (~20 s) happens once per checkout rather than once per run. Set it to share a cache.
* vLLM on CPU gets a 1 GiB KV cache unless ``VLLM_CPU_KVCACHE_SPACE`` is already set.
* ``croco`` runs the command line as a user would, in a child process.
* OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``) unless the variable is already set: the
  suite runs torch in this process beside engines and commands in others, on two cores, and threads
  that spin while they wait take those cores from the other processes (scoring the 48 English
  multiple-choice questions with SmolLM2 took 49 s spinning and 6 s waiting passively on a 2-core
  machine with other work; the results are the same, only idle threads sleep).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Before torch (and its OpenMP runtime) is first imported: the runtime reads the variable once.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session", autouse=True)
def croco_cache_dir() -> Iterator[Path]:
    """The model cache used by the whole session (see module docstring)."""
    with pytest.MonkeyPatch.context() as mp:
        if not os.environ.get("CROCO_CACHE"):
            mp.setenv("CROCO_CACHE", str(REPO_ROOT / ".croco_cache"))
        if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            mp.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
        from croco_pipeline.core.models.specs import cache_dir

        yield cache_dir()


@pytest.fixture(scope="session")
def tiny_policy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random chat LlamaForCausalLM (SmolLM2 tokenizer) that babbles multilingual words."""
    from tiny_models import build_tiny_policy

    return build_tiny_policy(tmp_path_factory.mktemp("models") / "tiny-policy")


@pytest.fixture(scope="session")
def tiny_reward_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random one-logit LlamaForSequenceClassification with a chat template."""
    from tiny_models import build_tiny_reward_model

    return build_tiny_reward_model(tmp_path_factory.mktemp("models") / "tiny-reward-model")


@pytest.fixture(scope="session")
def tiny_environ(tiny_policy_path: Path, tiny_reward_model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """``tiny_environ(storage, **overrides)``: the environment of a tiny-profile run on ``storage``.

    The policy and reward model are the tiny ones above unless the overrides name
    ``CROCO_POLICY_MODEL`` / ``CROCO_REWARD_MODEL``; Trackio writes to a fresh temporary folder
    (``CROCO_TRACKING_DIR``), never into the checkout; every value is turned into text.
    """

    def environ(storage: str | os.PathLike[str], **overrides: str | os.PathLike[str]) -> dict[str, str]:
        values = {
            "CROCO_PROFILE": "tiny",
            "CROCO_POLICY_MODEL": tiny_policy_path,
            "CROCO_REWARD_MODEL": tiny_reward_model_path,
            "CROCO_STORAGE": storage,
            "CROCO_TRACKING_DIR": tmp_path_factory.mktemp("tracking"),
            **overrides,
        }
        return {name: str(value) for name, value in values.items()}

    return environ


@pytest.fixture(scope="session")
def tiny_lora_adapter_path(tiny_policy_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random LoRA adapter (r 8, on q,k,v,o,gate,up,down like CroCo's DPO) for the tiny policy.

    Its rows that write into the tiny policy's constant residual dimension 0 are zeroed, so the adapted
    model still babbles words (just different ones) instead of ending every answer at once.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = tmp_path_factory.mktemp("adapters") / "tiny-lora"
    base = AutoModelForCausalLM.from_pretrained(tiny_policy_path)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        init_lora_weights=False,  # random B as well as A, so the adapter changes the outputs
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name and ("o_proj" in name or "down_proj" in name):
                param[0] = 0.0
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def embedded_policy_path(croco_cache_dir: Path) -> Path:
    """The embedded SmolLM2-135M-Instruct converted to a Hugging Face folder (cached in CROCO_CACHE)."""
    from croco_pipeline.core.models.specs import EMBEDDED_POLICY, resolve_model

    return Path(resolve_model(EMBEDDED_POLICY))


@pytest.fixture(scope="session")
def croco() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``croco(*args, env=None, cwd=REPO_ROOT, timeout=600)``: the ``croco`` command in a child process,
    its output captured as text; a failing command returns its exit status rather than raising.

    The installed entry point beside this Python when there is one (what a user runs), else the module.
    ``env`` replaces the environment (default: this process's); arguments are turned into text.
    """
    entry = Path(sys.executable).with_name("croco")
    command = [str(entry)] if entry.exists() else [sys.executable, "-m", "croco_pipeline.cli"]

    def run(
        *args: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] = REPO_ROOT,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=None if env is None else dict(env),
            timeout=timeout,
            check=False,
        )

    return run
