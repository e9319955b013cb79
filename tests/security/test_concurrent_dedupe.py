"""Uploads of the same bytes at the same moment make one document, as uploads one after another do."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from ragline.ingest.service import Accepted

UPLOADS = 20


def test_simultaneous_uploads_of_the_same_bytes_make_one_document(local) -> None:
    world = local()
    ingest = world.container.ingest
    start = threading.Barrier(UPLOADS)

    def upload(_: int) -> Accepted:
        start.wait()  # every thread checks for the bytes before any has stored them
        return ingest.accept("t1", b"the same words, sent twenty times at once", filename="same.txt")

    with ThreadPoolExecutor(UPLOADS) as pool:
        answers = list(pool.map(upload, range(UPLOADS)))

    documents, _ = world.container.store.list_documents("t1", limit=100)
    assert len(documents) == 1
    assert sorted(a.duplicate for a in answers) == [False] + [True] * (UPLOADS - 1)
    assert {a.document.id for a in answers} == {documents[0].id}
