import re

import pytest

from ragline.errors import DocumentParseError, UnsupportedMediaType
from ragline.ingest.chunking import chunk_blocks
from ragline.ingest.parsers import HTML, MARKDOWN, PDF, TEXT, Block, clean_text, decode_text, detect_content_type, parse
from tests.support import make_blank_pdf, make_encrypted_pdf, make_pdf, shared_dir


class WhitespaceTokenizer:
    """One token per word: enough to test packing and overlap exactly."""

    def token_offsets(self, texts):
        return [[m.span() for m in re.finditer(r"\S+", text)] for text in texts]


@pytest.mark.parametrize(
    ("filename", "declared", "head", "expected"),
    [
        ("a.pdf", None, b"%PDF-1.7", PDF),
        ("renamed.txt", "text/plain", b"%PDF-1.4", PDF),
        ("notes.md", None, b"# hi", MARKDOWN),
        ("page.HTML", None, b"<html>", HTML),
        ("x", "text/html; charset=utf-8", b"<p>", HTML),
        ("readme", None, b"plain words", TEXT),
        (None, "application/octet-stream", b"plain words", TEXT),
        ("a.txt", "application/octet-stream", b"words", TEXT),
    ],
)
def test_detect_content_type(filename, declared, head, expected):
    assert detect_content_type(filename, declared, head) == expected


@pytest.mark.parametrize(
    ("filename", "declared", "head"),
    [
        ("photo.png", "image/png", b"\x89PNG"),
        ("a.docx", None, b"PK\x03\x04"),
        ("blob", None, b"\x00\x01\x02"),
        ("tool.exe", "application/octet-stream", b"MZ"),
    ],
)
def test_unsupported_types_are_415(filename, declared, head):
    with pytest.raises(UnsupportedMediaType) as info:
        detect_content_type(filename, declared, head)
    assert info.value.status == 415


def test_decode_text_handles_boms_and_legacy_encodings():
    assert decode_text("héllo".encode("utf-8")) == "héllo"
    assert decode_text("\ufeffhéllo".encode("utf-8")) == "héllo"
    assert decode_text("héllo".encode("utf-16")) == "héllo"
    assert decode_text("café".encode("cp1252")) == "café"
    with pytest.raises(DocumentParseError):
        decode_text(b"abc\x00def")


def test_clean_text_joins_hyphenation_and_ligatures():
    assert clean_text("exam-\nple of the \ufb01rst   thing\r\n\n\n\nnext") == "example of the first thing\n\nnext"


def test_pdf_pages_keep_their_numbers():
    parsed = parse(make_pdf(["First page about apples.", "Second page about pears."], title="Fruit"), PDF)
    blocks = list(parsed.blocks)
    assert parsed.page_count == 2 and parsed.title == "Fruit"
    assert [b.page for b in blocks] == [1, 2]
    assert "apples" in blocks[0].text and "pears" in blocks[1].text


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        (b"", TEXT, "empty file"),
        (b"   \n\t ", TEXT, "only whitespace"),
        (b"%PDF-1.4\n1 0 obj garbage", PDF, "corrupt PDF"),
        (b"not a pdf at all", PDF, "corrupt PDF"),
    ],
)
def test_bad_files_fail_with_readable_errors(data, content_type, message):
    with pytest.raises(DocumentParseError, match=message):
        list(parse(data, content_type).blocks)


def test_encrypted_pdf_is_refused():
    with pytest.raises(DocumentParseError, match="encrypted PDF"):
        list(parse(make_encrypted_pdf("secret text"), PDF).blocks)


def test_pdf_without_text_layer_says_scanned():
    with pytest.raises(DocumentParseError, match="no extractable text — scanned PDF"):
        list(parse(make_blank_pdf(), PDF).blocks)


def test_markdown_sections():
    parsed = parse(b"Intro line.\n\n# Install\nRun make.\n\n## Linux\nUse apt.\n", MARKDOWN)
    blocks = list(parsed.blocks)
    assert parsed.title == "Install"
    assert [(b.section, b.text.splitlines()[-1]) for b in blocks] == [
        (None, "Intro line."),
        ("Install", "Run make."),
        ("Linux", "Use apt."),
    ]


@pytest.mark.parametrize(
    ("markdown", "sections"),
    [
        ("# Title\nbody", ["Title"]),
        ("## Install ##\nbody", ["Install"]),
        ("# C#\nbody", ["C"]),  # a closing "#" is not part of the title
        ("# Title # x\nbody", ["Title # x"]),
        ("#\tTabbed\r\nbody", ["Tabbed"]),
        ("# ###\nbody", ["#"]),
        ("###### Six\nbody", ["Six"]),
        ("####### Seven\nbody", [None]),
        ("#NoSpace\nbody", [None]),
        (" # Indented\nbody", [None]),
        ("intro\n#\nNot a title\n# Real\nbody", [None, "Real"]),  # a bare "#" has no title
        ("# a" + " " * 2000 + "x\nbody", ["a" + " " * 2000 + "x"]),
    ],
)
def test_markdown_heading_lines(markdown, sections):
    assert [b.section for b in parse(markdown.encode(), MARKDOWN).blocks] == sections


def test_html_drops_scripts_and_keeps_headings_as_sections():
    html = b"<html><head><title>Docs</title><script>var x=1;</script></head><body><h1>Setup</h1><p>Do this.</p><style>p{}</style><h2>More</h2><p>Then that.</p></body></html>"
    parsed = parse(html, HTML)
    blocks = list(parsed.blocks)
    assert parsed.title == "Docs"
    assert [b.section for b in blocks] == ["Setup", "More"]
    assert all("var x" not in b.text and "p{}" not in b.text for b in blocks)


def test_chunks_respect_size_and_overlap():
    sentences = [f"Sentence {i} has exactly six words." for i in range(40)]
    text = " ".join(sentences)
    chunks = list(chunk_blocks([Block(text, page=4, section="S")], WhitespaceTokenizer(), size=30, overlap=12))
    assert all(c.token_count <= 30 for c in chunks)
    assert all(c.page == 4 and c.section == "S" for c in chunks)
    joined = " ".join(c.text for c in chunks)
    assert all(s in joined for s in sentences)  # nothing lost
    for before, after in zip(chunks, chunks[1:]):
        # consecutive chunks share their boundary sentences
        assert before.text.split(". ")[-1].rstrip(".") in after.text


def test_a_sentence_longer_than_a_chunk_is_cut_by_tokens():
    text = " ".join(f"w{i}" for i in range(100))
    chunks = list(chunk_blocks([Block(text)], WhitespaceTokenizer(), size=40, overlap=10))
    assert [c.token_count for c in chunks] == [40, 40, 40]
    assert chunks[0].text.split()[-10:] == chunks[1].text.split()[:10]
    assert chunks[-1].text.endswith("w99")


def test_chunking_rejects_bad_overlap():
    with pytest.raises(ValueError):
        list(chunk_blocks([Block("a b c")], WhitespaceTokenizer(), size=10, overlap=10))


def test_chunks_never_exceed_the_model_window_with_the_real_tokenizer():
    from ragline.adapters.local.onnx_embedder import WordPieceTokenizer, load_tokenizer

    tokenizer = WordPieceTokenizer(load_tokenizer())
    text = ("Pneumonoultramicroscopicsilicovolcanoconiosis is long. " * 80) + "终 " * 300
    chunks = list(chunk_blocks([Block(text)], tokenizer, size=200, overlap=40))
    lengths = [len(offsets) for offsets in tokenizer.token_offsets([c.text for c in chunks])]
    assert max(lengths) <= 204  # re-tokenising a joined passage may shift a piece or two


def test_real_pdfs_parse_with_pages():
    pdfs = shared_dir("pdfs")
    parsed = parse((pdfs / "tracemonkey-pldi09.pdf").read_bytes(), PDF)
    blocks = list(parsed.blocks)
    assert parsed.page_count == 14
    assert [b.page for b in blocks] == list(range(1, 15))
    assert "Trace-based Just-in-Time" in blocks[0].text
    with pytest.raises(DocumentParseError, match="corrupt PDF"):
        list(parse((pdfs / "invalid-truncated-linearized.pdf").read_bytes(), PDF).blocks)
    near_empty = list(parse((pdfs / "word2016-one-page-near-empty.pdf").read_bytes(), PDF).blocks)
    assert len(near_empty) == 1 and near_empty[0].page == 1


def test_query_embeddings_are_cached_and_read_only():
    from ragline.adapters.local.onnx_embedder import OnnxEmbedder
    from ragline.retrieval.service import SearchService

    embedder = OnnxEmbedder()
    service = SearchService(None, embedder)  # type: ignore[arg-type]  # the cache lives in the service, per tenant
    first = service.query_vector("t1", "what is the refund policy?")
    assert service.query_vector("t1", "what is the refund policy?") is first
    assert not first.flags.writeable
    fresh = embedder.embed_documents(["what is the refund policy?"])[0]
    assert float(fresh @ first) > 0.9999


def test_fast_load_gives_the_same_vectors():
    """Skipping constant folding at load changes how the session runs, not what it computes."""
    import numpy as np

    from ragline.adapters.local.onnx_embedder import OnnxEmbedder

    texts = ["Sea otters hold hands while they sleep.", "Suspension bridges hang their deck from cables. " * 12]
    folded = OnnxEmbedder().embed_documents(texts)
    fast = OnnxEmbedder(fast_load=True).embed_documents(texts)
    assert fast.shape == folded.shape == (2, 384)
    assert np.all(np.sum(fast * folded, axis=1) > 0.9999)
