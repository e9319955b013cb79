"""No chunk is longer than RAGLINE_CHUNK_MAX_CHARS (8,000) characters, whatever its token count:
a 50 MB file of one repeated character used to become one 50 MB chunk, returned whole by every
search and chat. The tokenizer is never handed more than that many characters at once."""

from __future__ import annotations

import time

from ragline.adapters.local.wordpiece import WordPieceTokenizer, load_tokenizer
from ragline.ingest import chunking
from ragline.ingest.parsers import Block
from ragline.models import DocumentStatus

MB = 1_000_000


def test_a_5_mb_one_character_file_yields_chunks_of_at_most_8000_characters(local):
    world = local()
    document = world.ingest(b"a" * (5 * MB), "one-character.txt")
    assert document.status == DocumentStatus.INDEXED, document.error
    texts = world.chunk_texts(document)
    assert max(len(text) for text in texts) == 8000
    assert sum(len(text) for text in texts) == 5 * MB  # cut, not dropped


def test_the_setting_limits_chunks_of_few_long_tokens(local):
    """Words over 100 characters are one [UNK] token each: 200 tokens were ~30,000 characters."""
    world = local(chunk_max_chars=1000)
    document = world.ingest((("x" * 150 + " ") * 2000).encode(), "long-words.txt")
    assert document.status == DocumentStatus.INDEXED, document.error
    assert max(len(text) for text in world.chunk_texts(document)) <= 1000


class RecordingTokenizer:
    """The real WordPiece tokenizer, recording what it is handed per call."""

    def __init__(self) -> None:
        self.tokenizer = WordPieceTokenizer(load_tokenizer())
        self.calls: list[list[int]] = []

    def token_offsets(self, texts):
        self.calls.append([len(text) for text in texts])
        return self.tokenizer.token_offsets(texts)


def _chunk(text: str, max_chars: int = 8000) -> tuple[list[chunking.Passage], RecordingTokenizer, float]:
    tokenizer = RecordingTokenizer()
    started = time.perf_counter()
    passages = list(chunking.chunk_blocks([Block(text)], tokenizer, size=200, overlap=40, max_chars=max_chars))
    return passages, tokenizer, time.perf_counter() - started


def test_a_multi_megabyte_word_is_cut_before_the_tokenizer_sees_it():
    # Handed whole, a 5 MB word took the tokenizer 1.2 s and 0.3 GB for one [UNK] token.
    passages, tokenizer, seconds = _chunk("a" * (5 * MB))
    assert [len(p.text) for p in passages] == [8000] * 625
    assert max(max(call) for call in tokenizer.calls) <= 8000
    assert max(sum(call) for call in tokenizer.calls) <= chunking.TOKENIZE_BATCH * 8000
    assert seconds < 10  # ~0.7 s here


def test_a_long_line_without_sentence_ends_is_cut_at_spaces():
    vocabulary = ["alpha", "beta", "gamma", "delta", "river", "mountain"]  # one word piece each
    words = [vocabulary[n % 6] + ("" if n % 7 else ",") for n in range(1_000_000)]  # ~6 MB, no sentence end
    passages, tokenizer, seconds = _chunk(" ".join(words))
    assert max(len(p.text) for p in passages) <= 8000
    assert max(p.token_count for p in passages) <= 200
    assert max(max(call) for call in tokenizer.calls) <= 8000
    seen = [word for p in passages for word in p.text.replace(",", " ").split()]
    assert set(seen) == set(vocabulary)  # no word cut in two
    assert passages[0].text.startswith(" ".join(words[:3])) and passages[-1].text.endswith(words[-1])
    assert seconds < 20  # ~2 s here


def test_pieces_cut_after_a_space_in_the_second_half_or_hard():
    text = "aaaa bbbb cccc" + "d" * 30
    cuts = list(chunking._pieces(text, 0, len(text), 10))
    assert [text[a:b] for a, b in cuts] == ["aaaa bbbb ", "cccc" + "d" * 6, "d" * 10, "d" * 10, "dddd"]
    assert list(chunking._pieces(text, 0, 10, 10)) == [(0, 10)]
