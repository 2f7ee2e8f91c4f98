"""Machine translation of the English prompt set into a language that has no prompts of its own.

The reference translated with TranslateGemma packaged for vLLM, greedy, one message at a time. The same
happens here through any generator, in one of four request styles:

- ``"translategemma_vllm"`` (the paper's): one user message ``<<<source>>>en<<<target>>>{iso}<<<text>>>{text}``
  under the chat template of ``Infomaniak-AI/vllm-translategemma-27b-it``, which unpacks it;
- ``"completion"`` (the paper's for any other translator): a plain completion prompt, no chat template,
  ``Translate the following English source text to {Language}:\nEnglish: {text}\n{Language}: ``;
- ``"translategemma"``: Google's instruction wording for TranslateGemma written out as plain content;
- ``"instruction"``: asks an ordinary chat model to translate.

A request longer than ``max_input_tokens`` is not sent (the paper drops those at 8192 tokens), and a
translation that comes back empty is refused; with ``language_filter`` on (croco's default, off in the
``paper`` profile, which has no such filter) so is one in which the language detector does not find the
target language. Every refusal is counted with its reason. Translations that pass keep the English
prompt's ``prompt_id``.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from croco_pipeline.core.languages.codes import get_language
from croco_pipeline.core.languages.identify import detect
from croco_pipeline.core.models.generators import Generator
from croco_pipeline.core.sampling.config import SamplingConfig

PromptStyle = Literal["translategemma_vllm", "completion", "translategemma", "instruction"]

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
# The content the vLLM packaging of TranslateGemma expects in its single user message.
TRANSLATEGEMMA_VLLM_TEMPLATE = "<<<source>>>{source_code}<<<target>>>{target_code}<<<text>>>{text}"
# The paper's plain completion prompt for translators other than TranslateGemma (no chat template).
COMPLETION_TEMPLATE = "Translate the following {source} source text to {target}:\n{source}: {text}\n{target}: "
TEMPLATES = {
    "translategemma_vllm": TRANSLATEGEMMA_VLLM_TEMPLATE,
    "completion": COMPLETION_TEMPLATE,
    "translategemma": TRANSLATEGEMMA_TEMPLATE,
    "instruction": INSTRUCTION_TEMPLATE,
}

EMPTY = "empty"
WRONG_LANGUAGE = "wrong_language"
TOO_LONG = "too_long"


def uses_chat_template(style: PromptStyle) -> bool:
    """Whether the request goes in as a user message under the chat template (all but ``completion``)."""
    return style != "completion"


def translation_request(text: str, source: str, target: str, style: PromptStyle) -> str:
    """The request for one translation: a user message, or for ``completion`` the text to continue."""
    if style not in TEMPLATES:
        raise ValueError(f"unknown translation style {style!r}; choose one of {', '.join(TEMPLATES)}")
    return TEMPLATES[style].format(
        source=get_language(source).name,
        source_code=source,
        target=get_language(target).name,
        target_code=target,
        text=text,
    )


def conversations_over_limit(
    english: pl.DataFrame, tokenizer, style: PromptStyle, max_input_tokens: int, source: str = "en"
) -> set[str]:
    """Prompt ids whose conversation has a message whose translation request is over ``max_input_tokens``.

    The authors drop such a conversation from every language, English included. Each message (the
    ``message_texts`` column where a dataset has whole conversations, else the prompt) is measured as the
    request that translates it, rendered by ``tokenizer`` as the translator sees it. The request is built
    with English as the target for every language, so every partition drops the same conversations (a
    target's name or code changes a request by a token or two).
    """
    from croco_pipeline.core.models.generators import encode_prompt

    has_messages = "message_texts" in english.columns
    texts = english["message_texts"].to_list() if has_messages else [[text] for text in english["prompt"]]
    chat = uses_chat_template(style)
    over = set()
    for prompt_id, messages in zip(english["prompt_id"], texts, strict=True):
        for text in messages:
            request = translation_request(text.strip(), source, source, style)
            if len(encode_prompt(tokenizer, request, chat)) > max_input_tokens:
                over.add(prompt_id)
                break
    return over


def translate_prompts(
    generator: Generator,
    english: pl.DataFrame,
    target: str,
    *,
    style: PromptStyle = "instruction",
    max_new_tokens: int = 512,
    source: str = "en",
    max_input_tokens: int | None = None,
    language_filter: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Translate ``english`` (prompt_id, split, prompt) into ``target``, greedily.

    Requests over ``max_input_tokens`` tokens (None: no limit) are refused as ``too_long`` without being
    sent; empty answers as ``empty``; with ``language_filter``, answers the detector does not find in
    ``target`` as ``wrong_language``. Returns the accepted prompts (prompt_id, language, split, prompt,
    source) and the refused ones (prompt_id, translation, reason, detected_language).
    """
    chat = uses_chat_template(style)
    # Surrounding whitespace is the authors' to strip: from the text sent, and from the translation.
    requests = [translation_request(text.strip(), source, target, style) for text in english["prompt"]]
    fits = [True] * len(requests)
    if max_input_tokens is not None and requests:
        fits = [length <= max_input_tokens for length in generator.prompt_lengths(requests, chat_template=chat)]
    greedy = SamplingConfig(n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens, seed=0)
    sent = [request for request, ok in zip(requests, fits) if ok]
    answers = iter(generator.generate(sent, greedy, chat_template=chat) if sent else [])
    accepted, refused = [], []
    for row, ok in zip(english.iter_rows(named=True), fits, strict=True):
        if not ok:
            refused.append(
                {"prompt_id": row["prompt_id"], "translation": "", "reason": TOO_LONG, "detected_language": ""}
            )
            continue
        text = next(answers)[0].text.strip()
        detected = detect(text)[0] if text and language_filter else ""
        reason = EMPTY if not text else WRONG_LANGUAGE if language_filter and detected != target else None
        if reason:
            refused.append(
                {"prompt_id": row["prompt_id"], "translation": text, "reason": reason, "detected_language": detected}
            )
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
