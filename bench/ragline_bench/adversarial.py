"""Adversarial inputs for the parsers, the chunker and the keyword analyzer: what the security tests
run against each pattern (tests/security) and what `ragline bench fairness` uploads as a hostile
tenant. They live here, not under tests/, because the benchmarks may not import the tests.

Only the standard library is imported: the generators build text, nothing runs it.
"""

from __future__ import annotations

from collections.abc import Callable

N = 200_000  # characters of adversarial input per text case

# Python's html.parser (3.11.7 here) is quadratic on a run of "<a": 40,000 of them took 4.7 s.
# A million would take hours; on a Python where that is fixed, bs4 still needs seconds for 2 MB.
SLOW_HTML = b"<p>x</p>" + b"<a" * 1_000_000
# The 2 KB Markdown upload that froze every route for 38 s, and a 1 MB file of 500 of them.
PADDED_HEADING = ("# a" + " " * 2000 + "x").encode()
PADDED_HEADINGS = (("# a" + " " * 2000 + "x\nSome text under it.\n") * 500).encode()

# What each text case attacks: Markdown parsing (the heading pattern that froze the server),
# parsers.clean_text, chunking's sentence and paragraph ends, keyword analysis, the stored file's name.
TARGETS = ("markdown", "clean_text", "chunk", "analyze", "filename")

# name: (target, the adversarial text); every text is linear to build and a few hundred KB long.
TEXTS: dict[str, tuple[str, Callable[[], str]]] = {
    "heading: one padded line": ("markdown", lambda: "# a" + " " * N + "x"),
    "heading: padded lines": ("markdown", lambda: ("# a" + " " * 2000 + "x\n") * (N // 2000)),
    "heading: hashes": ("markdown", lambda: "#" * N),
    "heading: hashes and spaces": ("markdown", lambda: "# " * N + "x"),
    "heading: closing hashes": ("markdown", lambda: "# " + "a #" * N),
    "heading: bare hash lines": ("markdown", lambda: "#\n" * N),
    "heading: seven hashes": ("markdown", lambda: ("####### " + "a" * 100 + "\n") * (N // 100)),
    "heading: tabs and returns": ("markdown", lambda: "#\t" + " \t\r" * N + "#"),
    "spaces": ("clean_text", lambda: " \t\u00a0" * N + "x"),
    "spaces between words": ("clean_text", lambda: "a " * N),
    "hyphen breaks": ("clean_text", lambda: "a-\n" * N),
    "hyphen near-misses": ("clean_text", lambda: "-\n-" * N),
    "hyphens without breaks": ("clean_text", lambda: "a-" * N),
    "newlines": ("clean_text", lambda: "\n" * N + "x"),
    "newline pairs": ("clean_text", lambda: "\n\na" * N),
    "spaced newlines": ("clean_text", lambda: "\n \t" * N),
    "sentence ends": ("chunk", lambda: "." * N),
    "sentence ends and spaces": ("chunk", lambda: ". " * N),
    "closers without a space": ("chunk", lambda: "." + ")\"']" * N),
    "closers after each end": ("chunk", lambda: ".)" * N),
    "newline then spaces": ("chunk", lambda: "\n" + " " * N + "x"),
    "newline space runs": ("chunk", lambda: ("\n" + " " * 1000 + "x") * (N // 1000)),
    "one long word": ("chunk", lambda: "a" * N),
    "long line without sentence ends": ("chunk", lambda: "word " * N),
    "token: one word": ("analyze", lambda: "a" * N),
    "token: apostrophes": ("analyze", lambda: "a'" * N),
    "token: apostrophes only": ("analyze", lambda: "'’" * N),
    "token: near-miss apostrophes": ("analyze", lambda: "a'" * N + "'"),
    "token: curly apostrophes": ("analyze", lambda: "a’a " * N),
    "filename: unsafe characters": ("filename", lambda: "/" * 100 + "a/" * N + "\\" * N),
}


def nested_html(depth: int = 100_000) -> bytes:
    """Elements nested `depth` deep (a tree parser that recurses would overflow its stack)."""
    return b"<html><body>" + b"<div>" * depth + b"deep" + b"</div>" * depth + b"</body></html>"


def upload_files() -> list[tuple[str, bytes]]:
    """Every adversarial input as a file a tenant can upload: (filename, bytes).

    Markdown cases go as .md, the other texts as .txt (parsed, cleaned, chunked and analyzed like
    any text), the filename case as a text file whose content it is; then the padded headings, the
    quadratic HTML (which runs into the parse budget) and deeply nested HTML."""
    files = []
    for number, (name, (target, make)) in enumerate(TEXTS.items()):
        suffix = ".md" if target == "markdown" else ".txt"
        files.append((f"adversarial-{number:02d}-{name.split(':')[0].replace(' ', '-')}{suffix}", make().encode()))
    files += [
        ("padded-heading.md", PADDED_HEADING),
        ("padded-headings.md", PADDED_HEADINGS),
        ("slow.html", SLOW_HTML),
        ("nested.html", nested_html()),
    ]
    return files
