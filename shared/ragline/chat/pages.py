"""Sentences cut at a passage's end: the text that follows, for passages that end mid-sentence.

Chunks never span pages (ragline.ingest chunks each page on its own), so a sentence cut by a page
break is split between a page's last chunk and the next page's first; a chunk can also end inside
a long sentence, which the next chunk on the same page then repeats (the overlap). The chunk after
a passage is found by its id (ragline.chunks.next_chunk_id) and used when it is on the same page
or the next one; ragline.chat.extractive joins the sentence without the running header and footer.
"""

from __future__ import annotations

from collections.abc import Sequence

from ragline.chat.sentences import clean_passage, ends_complete, split_sentences
from ragline.chunks import next_chunk_id
from ragline.models import Source
from ragline.ports import VectorIndex


def ends_mid_sentence(text: str) -> bool:
    sentences = split_sentences(clean_passage(text))
    return bool(sentences) and not ends_complete(sentences[-1])


def continuations(index: VectorIndex, tenant_id: str, sources: Sequence[Source]) -> dict[str, str]:
    """Source id -> the text of the chunk after it, for sources that end mid-sentence."""
    wanted: dict[str, str] = {}
    for source in sources:
        following = next_chunk_id(source.id)
        if following is not None and ends_mid_sentence(source.text):
            wanted[source.id] = following
    if not wanted:
        return {}
    payloads = index.get_payloads(tenant_id, sorted(set(wanted.values())))
    pages = {source.id: source.page for source in sources}
    found: dict[str, str] = {}
    for source_id, following in wanted.items():
        payload = payloads.get(following)
        page = pages[source_id]
        same_or_next = (page,) if page is None else (page, page + 1)
        if payload is not None and payload.get("page") in same_or_next:
            found[source_id] = str(payload.get("text", ""))
    return found
