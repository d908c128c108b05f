"""Normalisation, the exact-duplicate key, and the basic format rules every candidate must pass.

These are the cheap checks generation applies inline. The full cascade (near-duplicates, semantic
duplicates, language identification, label consistency) lives in the filtering stage.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_SPACE = re.compile(r"\s+")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_URL = re.compile(r"https?://|www\.|\.com\b", re.IGNORECASE)
_MARKUP = re.compile(r"^\d{1,3}[.)]\s|[{}<>\[\]|*#$\\]|\.\.\.$")
# A list marker left inside a line: "... dark. 2. Fix ...", "out-of-focus: 4. remove", an answer label "B: ", or a
# marker dangling at the end ("sharpen it. 7"). Numbers in requests ("ISO 3200.", "4.3x", "on 360.") do not match.
_NUMBERING = re.compile(r"(?:[.!?:,]\s)\(?\d{1,2}[.)](?:\s|$)|^[A-Z]:\s|[.!?]\s\d{1,2}$")
_CHATTER = re.compile(
    r"\b(?:as an ai|language model|i'm an ai|i am an ai|i cannot|i can't help|here are|here is a|"
    r"i hope this|let me know|feel free|happy to help|assistant|here's a list|list of requests)\b",
    re.IGNORECASE,
)
_ECHO = re.compile(
    r"requests? like these|one request per line|new requests?\b|restoration service|photo restoration "
    r"service|write \d+|write them|nothing else|below requests|listing requests|i've rewritten",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class FormatRules:
    """Bounds a candidate must respect; the defaults suit one-sentence to short-paragraph requests."""

    min_words: int = 2
    max_words: int = 60
    min_chars: int = 6
    max_chars: int = 400
    min_ascii_letter_share: float = 0.9


def clean_text(text: str) -> str:
    """Unicode-normalised text with runs of whitespace collapsed: the form a candidate is stored in."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def plain_apostrophes(text: str) -> str:
    """``text`` with typographic apostrophes (’ ‘ ʼ) as "'", so patterns written with "'" match both spellings."""
    return text.translate(_APOSTROPHES)


def normalise(text: str) -> str:
    """The exact-duplicate key: case, punctuation, symbols (emoji), invisible format characters (zero-width
    joiners, variation selectors) and whitespace removed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(" " if unicodedata.category(ch).startswith(("P", "S", "C", "M")) else ch for ch in folded)
    return _SPACE.sub(" ", kept).strip()


def check_format(text: str, rules: FormatRules = FormatRules()) -> str | None:
    """The reason ``text`` breaks a format rule, or None when it passes."""
    words = text.split()
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return "no_letters"
    if len(words) < rules.min_words or len(text) < rules.min_chars:
        return "too_short"
    if len(words) > rules.max_words or len(text) > rules.max_chars:
        return "too_long"
    if sum(ch.isascii() for ch in letters) / len(letters) < rules.min_ascii_letter_share:
        return "non_latin_script"
    if _URL.search(text):
        return "contains_url"
    plain = plain_apostrophes(text)
    if _CHATTER.search(plain):
        return "llm_chatter"
    if _ECHO.search(plain):
        return "echoes_the_prompt"
    if _MARKUP.search(text):
        return "leftover_markup"
    if _NUMBERING.search(text):
        return "leftover_numbering"
    return None
