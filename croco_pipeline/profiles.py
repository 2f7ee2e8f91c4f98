"""Named configurations: the same assets on a laptop CPU (``embedded``), on GPUs with the paper's
models and hyperparameters (``paper``), or at toy size for tests (``tiny``).

``CROCO_PROFILE`` picks one (default ``embedded``); these variables override single settings:
``CROCO_STORAGE`` (``./croco_data`` or ``s3://bucket/prefix``), ``CROCO_POLICY_MODEL``,
``CROCO_GENERATOR_BACKEND`` (auto | vllm | transformers), ``CROCO_REWARD_BACKEND``
(language_fidelity | sequence_classifier), ``CROCO_REWARD_MODEL``, ``CROCO_JUDGE_MODEL``,
``CROCO_TRANSLATOR_MODEL``, ``CROCO_PROMPT_FILE``, ``CROCO_KEEP_MODELS_LOADED`` (1: one policy engine shared by all steps of
one process, as ``croco demo`` does).
"""

from __future__ import annotations

import os

from croco_pipeline.core.models.specs import EMBEDDED_POLICY
from croco_pipeline.core.io.storage import DEFAULT_BASE

PROFILES: dict[str, dict[str, dict]] = {
    # Real models that ship on PyPI; small enough for 2 CPU cores in a few minutes per language.
    "embedded": {
        "policy": {"model": EMBEDDED_POLICY, "max_model_len": 1024},
        "reward": {"backend": "language_fidelity"},
        "settings": {
            "profile": "embedded", "samples_per_prompt": 8, "max_new_tokens": 64, "max_train_prompts": 16,
            "max_eval_prompts": 16, "eval_samples_per_prompt": 2, "training": "embedded",
        },
    },
    # DESIGN §2: EuroLLM-9B policy, Skywork-Reward-V2 8B, 64 samples of up to 4096 tokens, paper DPO.
    "paper": {
        "policy": {"model": "utter-project/EuroLLM-9B-Instruct-2512", "max_model_len": 8192, "dtype": "bfloat16"},
        "reward": {"backend": "sequence_classifier", "model": "Skywork/Skywork-Reward-V2-Qwen3-8B", "max_length": 8192},
        # The reference translated prompts with TranslateGemma-27B (greedy, one message at a time).
        "translator": {"model": "google/translategemma-27b-it", "max_model_len": 8192, "dtype": "bfloat16"},
        # The reference judged with a Qwen3 MoE, thinking off, temperature 0.7.
        "judge": {"model": "Qwen/Qwen3-30B-A3B-Instruct-2507", "max_model_len": 16384, "dtype": "bfloat16"},
        "settings": {
            "profile": "paper", "samples_per_prompt": 64, "max_new_tokens": 4096, "respond_in_language": False,
            "training": "paper", "eval_samples_per_prompt": 1, "heldout_source": "auto", "judge": "llm",
            "translation_style": "translategemma",
        },
    },
    # Toy models built on the fly (tests); CROCO_POLICY_MODEL and CROCO_REWARD_MODEL name them.
    "tiny": {
        "policy": {"model": "", "max_model_len": 512},
        "reward": {"backend": "sequence_classifier", "max_length": 256},
        "settings": {
            "profile": "tiny", "samples_per_prompt": 3, "max_new_tokens": 8, "max_train_prompts": 4,
            "max_eval_prompts": 2, "eval_samples_per_prompt": 2, "training": "tiny",
        },
    },
}

_ENV_OVERRIDES = {
    "CROCO_POLICY_MODEL": ("policy", "model"),
    "CROCO_GENERATOR_BACKEND": ("policy", "backend"),
    "CROCO_REWARD_BACKEND": ("reward", "backend"),
    "CROCO_REWARD_MODEL": ("reward", "model"),
    "CROCO_PROMPT_FILE": ("settings", "prompt_file"),
    "CROCO_KEEP_MODELS_LOADED": ("policy", "keep_loaded"),
}


class UnknownProfileError(ValueError):
    pass


def resource_config(profile: str | None = None, environ: dict | None = None) -> dict[str, dict]:
    """The keyword arguments of each resource for a profile, with environment overrides applied."""
    environ = os.environ if environ is None else environ
    name = profile or environ.get("CROCO_PROFILE", "embedded")
    if name not in PROFILES:
        raise UnknownProfileError(f"Unknown CROCO_PROFILE {name!r}; choose one of {', '.join(PROFILES)}.")
    config = {section: dict(values) for section, values in PROFILES[name].items()}
    for variable, (section, key) in _ENV_OVERRIDES.items():
        if environ.get(variable):
            config[section][key] = environ[variable]
    # Without a judge model of its own, a profile judges with its policy model (when settings.judge is "llm").
    # Without a translator of its own, a profile translates with its policy model.
    for role, variable in (("judge", "CROCO_JUDGE_MODEL"), ("translator", "CROCO_TRANSLATOR_MODEL")):
        config.setdefault(role, dict(config["policy"]))
        if environ.get(variable):
            config[role]["model"] = environ[variable]
    config["storage"] = {"base_path": environ.get("CROCO_STORAGE") or DEFAULT_BASE}
    return config
