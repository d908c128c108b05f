"""Turn a messy LLM reply into candidate requests.

Small and large models alike wrap their answers: numbering, bullets, quotes, bold, "Here are..." preambles,
closing chatter and a last line cut off by the token limit. The parser strips the wrapping, keeps one candidate
per item, and gives a reason for every line it drops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from instructir.prompts.rules import plain_apostrophes

_MARKER = re.compile(r"^(?:\(?\d{1,3}[.):\]]|\(?[a-hA-H][.)]|[-*•·–—>+]+|#+)\s*")
_LABEL = re.compile(
    r"^(?:new\s+)?(?:request|example|prompt|user|customer|client|message|reply|answer|text)\s*#?\d*\s*[:=–—-]\s*",
    re.IGNORECASE,
)
_INLINE_ITEM = re.compile(r"\s+(?=\d{1,2}[.)]\s+\S)")
_PREAMBLE = re.compile(
    r"^(?:here(?:'s| is| are)\b|sure\b|certainly\b|of course\b|okay\b|ok\b|absolutely\b|great\b|below\b|"
    r"i hope\b|i've\b|i have (?:written|created)|these (?:are|requests)\b|as an ai\b|as a language model\b|"
    r"let me know\b|feel free\b|note\b|remember\b|happy to help\b|i can help\b|hope (?:this|these)\b)",
    re.IGNORECASE,
)
_QUOTES = "\"'`“”‘’«»„"
_TERMINAL = (".", "!", "?", ")", '"', "”", "'")


@dataclass
class ParsedReply:
    """The candidates found in one reply, in order, and every dropped line with its reason."""

    candidates: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)


def strip_wrapping(line: str) -> str:
    """Remove list markers, labels, markdown emphasis and surrounding quotes from one line."""
    text = line.strip().replace("**", "").replace("__", "")
    previous = None
    while text != previous:
        previous = text
        text = _MARKER.sub("", text, count=1).strip()
        text = _LABEL.sub("", text, count=1).strip()
        text = _strip_quotes(text)
    return text


def _strip_quotes(text: str) -> str:
    """Drop quotes that wrap the whole text, also when the closing quote follows the end punctuation."""
    if len(text) >= 2 and text[0] in _QUOTES:
        inner = text[1:]
        if inner and inner[-1] in _QUOTES:
            inner = inner[:-1]
        if not any(mark in inner for mark in '"“”'):
            return inner.strip()
    return text


def split_items(reply: str) -> list[str]:
    """The reply's lines, with several numbered items on one line split apart."""
    items: list[str] = []
    for line in reply.splitlines():
        if _MARKER.match(line.strip()) and _INLINE_ITEM.search(line):
            items.extend(_INLINE_ITEM.split(line.strip()))
        else:
            items.append(line)
    return items


def parse_reply(reply: str, truncated: bool = False) -> ParsedReply:
    """Candidates from one reply; ``truncated`` says the reply hit the token limit, so its last item may be cut."""
    parsed = ParsedReply()
    items = [item for item in split_items(reply) if item.strip()]
    for position, item in enumerate(items):
        text = strip_wrapping(item)
        is_last = position == len(items) - 1
        if not text:
            parsed.rejected.append((item.strip(), "only_markup"))
        elif _PREAMBLE.match(plain_apostrophes(text)) or text.endswith(":"):
            parsed.rejected.append((text, "preamble_or_chatter"))
        elif is_last and truncated and not text.endswith(_TERMINAL):
            parsed.rejected.append((text, "truncated"))
        else:
            parsed.candidates.append(text)
    return parsed
