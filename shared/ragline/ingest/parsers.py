"""Turn uploaded bytes into text blocks (a page or a section each), keeping page numbers.

PDF pages are read one at a time, so a large PDF is never held as text all at once.
"""

from __future__ import annotations

import io
import logging
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

# pypdf and bs4 are imported where they parse: a function that only accepts uploads or searches
# does not pay ~0.17 s of cold start for them.
from ragline.errors import DocumentParseError, UnsupportedMediaType

log = logging.getLogger(__name__)

PDF = "application/pdf"
TEXT = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
SUPPORTED_TYPES = (PDF, TEXT, MARKDOWN, HTML)
_EXTENSIONS = {
    ".pdf": PDF,
    ".txt": TEXT,
    ".text": TEXT,
    ".log": TEXT,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
}
_DECLARED = {
    "application/pdf": PDF,
    "application/x-pdf": PDF,
    "text/plain": TEXT,
    "text/markdown": MARKDOWN,
    "text/x-markdown": MARKDOWN,
    "text/html": HTML,
    "application/xhtml+xml": HTML,
}


@dataclass
class Block:
    text: str
    page: int | None = None
    section: str | None = None


@dataclass
class ParsedDocument:
    title: str | None
    page_count: int
    blocks: Iterator[Block]


def detect_content_type(filename: str | None, declared: str | None, head: bytes) -> str:
    """The type we will parse the bytes as, or 415. Magic bytes beat the name, the name beats the header."""
    if head.startswith(b"%PDF-"):
        return PDF
    suffix = PurePosixPath(filename or "").suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    base = (declared or "").split(";")[0].strip().lower()
    if base in _DECLARED:
        return _DECLARED[base]
    if not suffix and base in ("", "application/octet-stream") and head and _looks_like_text(head):
        return TEXT
    shown = suffix or base or "unknown"
    raise UnsupportedMediaType(
        f"cannot ingest {shown!s} files: supported are PDF, plain text, Markdown and HTML",
        error="Unsupported file type",
    )


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return True
    return b"\x00" not in head[:8192]


def decode_text(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    if b"\x00" in data[:8192]:
        raise DocumentParseError("binary data in a text file: is this really text?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_HYPHEN_BREAK = re.compile(r"(\w)-\n(\w)")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _HYPHEN_BREAK.sub(r"\1\2", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _MANY_NEWLINES.sub("\n\n", text).strip()


def parse(data: bytes, content_type: str, filename: str | None = None) -> ParsedDocument:
    if not data:
        raise DocumentParseError("empty file: there is nothing to index")
    if content_type == PDF:
        return _parse_pdf(data)
    text = decode_text(data)
    if not text.strip():
        raise DocumentParseError("the file contains only whitespace: there is nothing to index")
    if content_type == HTML:
        return _parse_html(text)
    if content_type == MARKDOWN:
        blocks = list(_markdown_sections(text))
        return ParsedDocument(title=_first_heading(text), page_count=0, blocks=iter(blocks))
    return ParsedDocument(title=None, page_count=0, blocks=iter([Block(clean_text(text))]))


def _parse_pdf(data: bytes) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password; those we can read.
            if not reader.decrypt(""):
                raise DocumentParseError("encrypted PDF: it needs a password, which Ragline does not have")
        page_count = len(reader.pages)
        title = reader.metadata.title if reader.metadata else None
    except DocumentParseError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise DocumentParseError(f"corrupt PDF: {exc or type(exc).__name__}") from exc
    if page_count == 0:
        raise DocumentParseError("the PDF has no pages")

    def pages() -> Iterator[Block]:
        found_text = False
        for number in range(1, page_count + 1):
            try:
                raw = reader.pages[number - 1].extract_text() or ""
            except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
                raise DocumentParseError(f"corrupt PDF: page {number} cannot be read ({exc})") from exc
            text = clean_text(raw)
            if text:
                found_text = True
                yield Block(text, page=number)
        if not found_text:
            raise DocumentParseError("no extractable text — scanned PDF? (OCR is not supported yet)")

    return ParsedDocument(title=_usable_title(title), page_count=page_count, blocks=pages())


def _usable_title(raw: object) -> str | None:
    """A PDF's /Title, unless it is a file name or an internal id rather than a title."""
    if not raw:
        return None
    title = clean_text(str(raw))
    looks_like_an_id = " " not in title and any(not (ch.isalpha() or ch == "-") for ch in title)
    if not title or looks_like_an_id or title.lower().endswith((".doc", ".docx", ".pdf", ".tex", ".dvi")):
        return None
    return title


# Where a heading line may start: a line that begins with one to six "#". The rest of the line is
# read with str methods: a pattern with overlapping quantifiers there (`\s+(.+?)\s*#*\s*$`)
# backtracked in cubic time on a long line of spaces and froze the process for seconds.
_HEADING_START = re.compile(r"^#{1,6}(?!#)", re.MULTILINE)


def _heading_title(rest: str) -> str | None:
    """The title of a heading line, given what follows its opening "#"s; None when it is no heading."""
    if not rest[:1].isspace():
        return None
    content = rest.strip()
    if not content:
        return None
    # A closing run of "#"s is not part of the title ("## Install ##"); a line of only "#"s is titled "#".
    return content.rstrip("#").rstrip() or content[0]


def _headings(text: str) -> Iterator[tuple[int, str]]:
    """(offset of the line, title) of each Markdown heading, in one pass over the text."""
    for match in _HEADING_START.finditer(text):
        line_end = text.find("\n", match.end())
        title = _heading_title(text[match.end() : line_end if line_end != -1 else len(text)])
        if title is not None:
            yield match.start(), title


def _first_heading(text: str) -> str | None:
    return next((title for _, title in _headings(text)), None)


def _markdown_sections(text: str) -> Iterator[Block]:
    headings = list(_headings(text))
    starts = [0] + [start for start, _ in headings]
    titles: list[str | None] = [None] + [title for _, title in headings]
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(text)
        body = clean_text(text[start:end])
        if body:
            yield Block(body, section=titles[index])


def _parse_html(text: str) -> ParsedDocument:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup(["script", "style", "noscript", "template", "svg", "head"]):
        tag.decompose()
    for level in range(1, 7):
        for heading in soup.find_all(f"h{level}"):
            heading.replace_with(f"\n\n{'#' * level} {heading.get_text(' ', strip=True)}\n\n")
    body = soup.get_text("\n")
    blocks = list(_markdown_sections(body))
    if not blocks:
        raise DocumentParseError("the HTML page has no visible text")
    return ParsedDocument(title=title or _first_heading(body), page_count=0, blocks=iter(blocks))
