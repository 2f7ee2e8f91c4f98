"""Machine translation of the English prompt set into a language that has no prompts of its own.

The reference translated with TranslateGemma through vLLM, greedy, one message at a time. The same
happens here through any generator: ``prompt_style="translategemma"`` puts each prompt in the single
user message that TranslateGemma models are trained on (source and target language with their codes,
then the text after two blank lines); ``"instruction"`` asks an ordinary chat model to translate.

A translation is refused, and counted, when it comes back empty or when the language detector does not
find the target language in it. Translations that pass keep the English prompt's ``prompt_id``.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from croco_pipeline.core.models.generators import Generator

from croco_pipeline.core.sampling.config import SamplingConfig
from croco_pipeline.core.languages.identify import detect
from croco_pipeline.core.languages.codes import get_language

PromptStyle = Literal["translategemma", "instruction"]

TRANSLATEGEMMA_TEMPLATE = (
    "You are a professional {source} ({source_code}) to {target} ({target_code}) translator. Your goal is "
    "to accurately convey the meaning and nuances of the original {source} text while adhering to {target} "
    "grammar, vocabulary, and cultural sensitivities.\n"
    "Produce only the {target} translation, without any additional explanations or commentary. Please "
    "translate the following {source} text into {target}:\n\n\n{text}"
)
INSTRUCTION_TEMPLATE = (
    "Translate the following text from {source} into {target}. Reply with the translation only.\n\n{text}"
)

EMPTY = "empty"
WRONG_LANGUAGE = "wrong_language"


def translation_request(text: str, source: str, target: str, style: PromptStyle) -> str:
    """The user message that asks for one translation."""
    template = TRANSLATEGEMMA_TEMPLATE if style == "translategemma" else INSTRUCTION_TEMPLATE
    return template.format(
        source=get_language(source).name, source_code=source, target=get_language(target).name,
        target_code=target, text=text,
    )


def translate_prompts(
    generator: Generator,
    english: pl.DataFrame,
    target: str,
    *,
    style: PromptStyle = "instruction",
    max_new_tokens: int = 512,
    source: str = "en",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Translate ``english`` (prompt_id, split, prompt) into ``target``, greedily.

    Returns the accepted prompts (prompt_id, language, split, prompt, source) and the refused ones
    (prompt_id, translation, reason, detected_language).
    """
    requests = [translation_request(text, source, target, style) for text in english["prompt"]]
    greedy = SamplingConfig(n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens, seed=0)
    outputs = generator.generate(requests, greedy) if requests else []
    accepted, refused = [], []
    for row, completions in zip(english.iter_rows(named=True), outputs, strict=True):
        text = completions[0].text.strip()
        detected = detect(text)[0] if text else ""
        reason = EMPTY if not text else WRONG_LANGUAGE if detected != target else None
        if reason:
            refused.append({"prompt_id": row["prompt_id"], "translation": text, "reason": reason, "detected_language": detected})
        else:
            accepted.append({"prompt_id": row["prompt_id"], "language": target, "split": row["split"], "prompt": text})
    label = f"machine-translated by {generator.model}"
    accepted_frame = pl.DataFrame(
        accepted, schema={"prompt_id": pl.String, "language": pl.String, "split": pl.String, "prompt": pl.String}
    ).with_columns(pl.lit(label).alias("source"))
    refused_frame = pl.DataFrame(
        refused,
        schema={"prompt_id": pl.String, "translation": pl.String, "reason": pl.String, "detected_language": pl.String},
    )
    return accepted_frame, refused_frame


def merge_user_and_machine(user: pl.DataFrame | None, machine: pl.DataFrame) -> pl.DataFrame:
    """User-supplied translations always win: machine ones only fill the prompt ids the user lacks."""
    if user is None or user.is_empty():
        return machine.sort("prompt_id")
    missing = machine.filter(~pl.col("prompt_id").is_in(user["prompt_id"].implode()))
    return pl.concat([user, missing.select(user.columns)]).sort("prompt_id")
