"""Whole sentences out of retrieved passages, without the page furniture around them.

Pure functions on text, for the extractive answerer. Passages are PDF pages cut into chunks (see
ragline.ingest): lines end wherever the layout wrapped them, running headers and footers sit at a
page's edges, and figures leave runs of axis labels and symbol glyphs behind. Sentences are kept
exactly as written (whitespace collapsed, nothing else touched), so numbers and units survive.
"""

from __future__ import annotations

import re
import unicodedata

# Tokens that end with a period but do not end a sentence (compared lower-case, without the period).
ABBREVIATIONS = frozenset(
    "al approx ca cf ch co col dept dr e.g eg eq eqs est etc fig figs i.e ie inc jr lt ltd mr mrs ms no nos "
    "p pp prof ref refs resp sec sect sr st suppl tab vol vols vs viz".split()
)
# A sentence ends at one of these: Latin, CJK (full width), Arabic/Urdu, Devanagari, ellipsis.
_END_MARKS = ".!?。！？؟۔।…"
_FULL_WIDTH_ENDS = "。！？"  # end a sentence with no space after them
# Closing quotes/brackets and citation markers ("[3]", "[3, 4]", "(12)") that belong to the sentence before.
_TRAILERS = r"(?:[\"'”’»)\]]|\s?\[\d+(?:\s*[,–-]\s*\d+)*\]|\s?\(\d+(?:\s*[,–-]\s*\d+)*\))*"
_BOUNDARY = re.compile(rf"(?:[{_FULL_WIDTH_ENDS}]+{_TRAILERS})|(?:[.!?؟۔।…]+{_TRAILERS}(?=\s|$))")
_WORD_BEFORE = re.compile(r"([\w.]+)\.$")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_SYMBOL_FONT = re.compile(r"/C\d+|ð.*Þ")
# "Table 1. Age …", "Fig. 2. The …": the number after these is not a sentence's end.
_CAPTION_START = re.compile(r"^(?:table|fig|figure)\.?\s*\d+[a-z]?\.$", re.IGNORECASE)

MIN_SENTENCE_CHARS = 20
MIN_WIDE_SENTENCE_CHARS = 8
MAX_SENTENCE_CHARS = 500
EDGE_LINES = 3  # lines at each edge of a passage that may be a running header or footer
_FURNITURE = re.compile(
    r"""(
        ^\s*[-–—]?\s*(?i:page\s+)?\d{1,4}\s*(?i:of\s+\d{1,4})?\s*[-–—]?\s*$   # a page number
      | ^\s*(?i:[ivxlc]{1,6})\s*$                                         # a roman page number
      | ©|(?i:\bdoi:|\bissn\b|\be-?mail\b|https?://|www\.)               # publisher lines
      | \bet\ al\.\s*/                                                   # "Y. Özen et al. / Journal"
      | (?i:(?:vol|no)[.:]\s*\d+.*(?:vol|no)[.:]\s*\d+)                    # "No: 3Vol: 39"
      | (?i:\b(?:journal|proceedings|transactions)\b.*\b(?:19|20)\d\d\b)   # a journal's running title
      | [a-z]{3,}[A-Z]{3,}                                               # words glued by layout: "footballersSAYGIN"
    )""",
    re.VERBOSE,
)


def letter_share(text: str) -> float:
    """Share of the non-space characters that are letters (any script)."""
    visible = [ch for ch in text if not ch.isspace()]
    if not visible:
        return 0.0
    return sum(1 for ch in visible if _LETTER.match(ch)) / len(visible)


def _is_glyph_token(token: str) -> bool:
    """A token of a chart or a symbol font: no letters, one character, "/C2" (pypdf's name for an
    unmapped glyph) or "ð1Þ" (equation numbers in some TeX fonts)."""
    bare = token.strip("()[].,;:")
    return len(bare) <= 1 or not _LETTER.search(bare) or bool(_SYMBOL_FONT.fullmatch(bare))


def is_glyph_run(line: str) -> bool:
    """A line left behind by a figure, chart or table: axis ticks, legend letters, symbol-font glyphs.

    Few letters, or mostly glyph tokens ("0 10 20 30", "(a) (b) (c)", "1⁄4 Isc /C2 V oc /C2 FF").
    """
    tokens = line.split()
    if not tokens:
        return False
    if letter_share(line) < 0.4:
        return True
    glyphs = sum(1 for token in tokens if _is_glyph_token(token))
    return len(tokens) >= 4 and glyphs / len(tokens) >= 0.5


_REFERENCE_ENTRY = re.compile(
    r"\(\s*(?:19|20)\d\d[a-z]?\s*\)\s*\d+\s*[–-]\s*\d+"  # "(2009) 970–972"
    r"|\d+\s*\(\s*(?:19|20)\d\d\s*\)\s*[,:]?\s*\d+"  # "93 (2009) 970"
    r"|(?:19|20)\d\d[,;]\s*\d+(?:\s*\(\d+\))?\s*[:,]\s*\d+\s*[–-]\s*\d+"  # "2009; 39(3): 361-365"
    r"|(?:Proc|Lett|Phys|Appl|Rev|Jpn|Conf|Trans)\.\s*$",
)


_INITIAL = re.compile(r"\b[A-Z]\.(?:\s|-)")
_CAPTION = re.compile(r"^(?:table|fig|figure)\.?\s*\d+[a-z]?[.:]", re.IGNORECASE)


def is_reference_entry(sentence: str) -> bool:
    """A bibliography entry (volume, year and pages, or a list of initialled authors), not prose."""
    return bool(_REFERENCE_ENTRY.search(sentence)) or len(_INITIAL.findall(sentence)) >= 3


def is_caption(sentence: str) -> bool:
    """ "Table 2. Serum NO levels …", "Fig. 1. The schematic …": a label for what the text cannot show."""
    return bool(_CAPTION.match(sentence))


def is_furniture(line: str) -> bool:
    """A running header or footer line: page numbers, journal and publisher lines, glued layout text."""
    return bool(_FURNITURE.search(line))


def _is_heading(line: str, previous: str | None, following: str | None) -> bool:
    """A short line standing alone between finished text and a capitalised line ("Introduction", "2. Methods")."""
    words = line.split()
    if not words or len(words) > 6 or line.rstrip()[-1:] in _END_MARKS + ",;:":
        return False
    before_ends = previous is None or previous.rstrip()[-1:] in _END_MARKS + ":"
    after_starts = following is None or following[:1].isupper() or following[:1].isdigit()
    return before_ends and after_starts


def clean_passage(text: str) -> str:
    """The passage as running prose: furniture at its edges, glyph runs and headings dropped, lines joined.

    Blank lines stay paragraph breaks ("\\n\\n"); within a paragraph, line ends become spaces.
    """
    lines = [line.strip() for line in unicodedata.normalize("NFC", text).split("\n")]
    # Where furniture sits: the first and last lines of a page (a passage at a page's edge carries them).
    content = [i for i, line in enumerate(lines) if line]
    edges = set(content[:EDGE_LINES] + content[-EDGE_LINES:])
    kept: list[str] = []
    for i, line in enumerate(lines):
        if not line:
            kept.append("")
            continue
        if i in edges and is_furniture(line):
            continue
        # A dropped figure line ends the text before it: never glue the sentences around it together.
        kept.append("" if is_glyph_run(line) else line)
    paragraphs: list[list[str]] = [[]]
    for i, line in enumerate(kept):
        if not line:
            paragraphs.append([])
            continue
        previous = paragraphs[-1][-1] if paragraphs[-1] else None
        following = next((nxt for nxt in kept[i + 1 :] if nxt), None)
        if _is_heading(line, previous, following):
            paragraphs.append([])  # a heading ends the paragraph before it
            continue
        paragraphs[-1].append(line)
    return "\n\n".join(" ".join(p) for p in paragraphs if p)


def _ends_sentence(text: str, start: int, end: int, mark: str) -> bool:
    """Whether the boundary candidate ending at `end` really ends the sentence begun at `start`."""
    if mark[0] != ".":
        return True
    upto = text[: text.rfind(".", 0, end) + 1]
    if _CAPTION_START.match(upto[start:].strip()):  # "Table 1. Age (years) …": the caption goes on
        return False
    before = _WORD_BEFORE.search(upto)
    if before is not None:
        word = before.group(1).lower()
        if word in ABBREVIATIONS or word.rstrip(".") in ABBREVIATIONS:
            return False
        if len(word) == 1 and before.group(1).isupper():  # an initial: "J. Smith", "Y. Özen" (not "20 m.")
            return False
    following = text[end:].lstrip()
    # "e.g. the", "vs. control", "approx. 5": a lower-case word after a period continues the sentence.
    return not following[:1].islower()


def split_sentences(text: str) -> list[str]:
    """Whole sentences of running text, whitespace collapsed, in order.

    A period ends a sentence only before a space (decimals and "e.g." do not) and not after a known
    abbreviation or an initial; citation markers after the period stay with their sentence.
    Full-width CJK marks end a sentence with no space after them.
    """
    sentences: list[str] = []
    for paragraph in text.split("\n\n"):
        paragraph = " ".join(paragraph.split())
        start = 0
        for match in _BOUNDARY.finditer(paragraph):
            if not _ends_sentence(paragraph, start, match.end(), match.group()):
                continue
            sentence = paragraph[start : match.end()].strip()
            if sentence:
                sentences.append(sentence)
            start = match.end()
        rest = paragraph[start:].strip()
        if rest:
            sentences.append(rest)
    return sentences


def ends_complete(sentence: str) -> bool:
    """Whether a sentence ends with its own end mark (else the passage cut it off)."""
    stripped = re.sub(_TRAILERS + "$", "", sentence.rstrip())
    return stripped[-1:] in _END_MARKS


def is_answer_sentence(sentence: str) -> bool:
    """Prose worth quoting: long enough, mostly words, not a table row or a cut-off fragment."""
    # CJK text has no spaces between words and says more per character: judged by length alone.
    wide = any(unicodedata.east_asian_width(ch) == "W" for ch in sentence)
    shortest = MIN_WIDE_SENTENCE_CHARS if wide else MIN_SENTENCE_CHARS
    if not shortest <= len(sentence) <= MAX_SENTENCE_CHARS or "|" in sentence:
        return False
    if letter_share(sentence) < 0.6 or is_reference_entry(sentence) or is_caption(sentence):
        return False
    if len(sentence.split()) < 4 and not wide:
        return False
    return sentence[:1].isupper() or sentence[:1].isdigit() or not sentence[:1].isascii()
