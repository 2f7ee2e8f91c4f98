"""The languages the pipeline knows: ISO 639-1 code, English name and resource group.

The paper trains on seven high-resource languages (da nl en fr de it es) and four low-resource ones
(gl ga mt cy); evaluation also touches no sv pt fi.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    group: str  # "high-resource" | "low-resource"


KNOWN_LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in [
        Language("da", "Danish", "high-resource"),
        Language("nl", "Dutch", "high-resource"),
        Language("en", "English", "high-resource"),
        Language("fr", "French", "high-resource"),
        Language("de", "German", "high-resource"),
        Language("it", "Italian", "high-resource"),
        Language("es", "Spanish", "high-resource"),
        Language("gl", "Galician", "low-resource"),
        Language("ga", "Irish", "low-resource"),
        Language("mt", "Maltese", "low-resource"),
        Language("cy", "Welsh", "low-resource"),
        Language("no", "Norwegian", "high-resource"),
        Language("sv", "Swedish", "high-resource"),
        Language("pt", "Portuguese", "high-resource"),
        Language("fi", "Finnish", "high-resource"),
    ]
}

PAPER_HIGH_RESOURCE = ["da", "nl", "en", "fr", "de", "it", "es"]
PAPER_LOW_RESOURCE = ["gl", "ga", "mt", "cy"]

_CODE_PATTERN = re.compile(r"^[a-z]{2}$")


class UnknownLanguageError(ValueError):
    pass


def get_language(code: str) -> Language:
    """Return the registered language for an ISO 639-1 code, or raise a message that says what to do."""
    if not isinstance(code, str) or not _CODE_PATTERN.match(code):
        raise UnknownLanguageError(
            f"{code!r} is not an ISO 639-1 language code (two lower-case letters, e.g. 'da'). "
            f"Known codes: {', '.join(KNOWN_LANGUAGES)}."
        )
    if code not in KNOWN_LANGUAGES:
        raise UnknownLanguageError(f"Unknown language code {code!r}. Known codes: {', '.join(KNOWN_LANGUAGES)}.")
    return KNOWN_LANGUAGES[code]


def language_name(code: str) -> str:
    return get_language(code).name
