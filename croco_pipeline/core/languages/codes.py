"""The languages the pipeline knows: every ISO 639-1 code, with its English name and resource group.

Codes and names come from the ISO 639 tables of ``pycountry`` (184 two-letter codes). The paper trains on
seven high-resource languages (da nl en fr de it es) and four low-resource ones (gl ga mt cy); evaluation
also touches no sv pt fi: those fifteen carry the paper's group, every other language the group "other".
Whether croco can *measure* a language (its language identifiers know it) is asked of
``core.languages.identify``.
"""

from __future__ import annotations

import functools
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


OTHER_GROUP = "other"  # a language outside the paper's two groups


def get_language(code: str) -> Language:
    """The language of an ISO 639-1 code, or an error that says what to do."""
    if not isinstance(code, str) or not _CODE_PATTERN.match(code):
        raise UnknownLanguageError(
            f"{code!r} is not an ISO 639-1 language code (two lower-case letters, e.g. 'da' or 'pl')."
        )
    if code in KNOWN_LANGUAGES:
        return KNOWN_LANGUAGES[code]
    entry = _iso_639_1().get(code)
    if entry is None:
        raise UnknownLanguageError(
            f"Unknown language code {code!r}: not in the ISO 639-1 table (two-letter codes such as da, pl, sw)."
        )
    return Language(code, entry, OTHER_GROUP)


@functools.cache
def _iso_639_1() -> dict[str, str]:
    """ISO 639-1 code -> English name, from pycountry's ISO 639-3 table ("Modern Greek (1453-)" -> "Modern
    Greek": the qualifier would read oddly in "Please respond in ...")."""
    import pycountry

    return {
        language.alpha_2: re.sub(r"\s*\(.*\)$", "", language.name)
        for language in pycountry.languages
        if hasattr(language, "alpha_2")
    }


def iso_639_1_codes() -> list[str]:
    """Every ISO 639-1 code, sorted."""
    return sorted(_iso_639_1())


def language_name(code: str) -> str:
    return get_language(code).name
