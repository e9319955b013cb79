"""Every way a document can fail ends the same way (IngestService.fail_job): status `failed` with a
readable error, no searchable chunk left (not even the previous version's), the job finished with
the same error, and one `error.ingestion` event {document_id, job_id, error}.

Each row fails version 2 of a document whose version 1 is indexed, through one code path: the
local worker, its crash recovery, the SQS message handler, or an SQS queue that cannot take the job.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import EndpointConnectionError

from ragline.adapters.aws.sqs_queue import SqsJobQueue
from ragline.adapters.local.events import InProcessEventBus
from ragline.adapters.local.filesystem import FilesystemBlobStore
from ragline.adapters.local.sqlite_store import SqliteMetadataStore
from ragline.adapters.local.vector_engine import EmbeddedVectorIndex
from ragline.config import Settings
from ragline.errors import DependencyUnavailable, DocumentParseError, JobUndeliverable, Unprocessable
from ragline.ingest.messages import IngestMessageHandler, RetryLater, job_message
from ragline.ingest.service import INTERNAL_ERROR, IngestService, extract_passages
from ragline.models import Document, DocumentStatus, Job, JobStatus
from ragline.retrieval.filters import scope_to_tenant
from ragline.worker import IngestWorker

DIM = 8
VERSION_1 = b"Sea otters hold hands while they sleep so that they do not drift apart."
VERSION_2 = b"Suspension bridges carry their deck on vertical hangers from two main cables."
NO_TEXT = b" \n\t \n"
LAST_RECEIVE = 5


class WordTokenizer:
    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return [[m.span() for m in re.finditer(r"\S+", text)] for text in texts]


class HashEmbedder:
    model_name = "hash"
    dimension = DIM
    tokenizer = WordTokenizer()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=DIM) for t in texts]
        return np.array([r / np.linalg.norm(r) for r in rows], dtype=np.float32).reshape(len(texts), DIM)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


class SqsDown:
    def send_message(self, **_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://sqs.us-east-1.amazonaws.com")


@dataclass
class World:
    settings: Settings
    store: SqliteMetadataStore
    index: EmbeddedVectorIndex
    embedder: HashEmbedder
    ingest: IngestService
    events: list[dict[str, Any]] = field(default_factory=list)

    def worker(self) -> IngestWorker:
        return IngestWorker(self.ingest, self.store, self.store, max_attempts=self.settings.max_ingest_attempts)

    def handler(self) -> IngestMessageHandler:
        return IngestMessageHandler(
            self.settings, self.ingest, self.store, self.store, inbox=None, upload_drop=None, upload_claims=None
        )

    def upload(self, data: bytes, filename: str = "notes.txt", ingest: IngestService | None = None) -> Job:
        accepted = (ingest or self.ingest).accept("t1", data, filename=filename, external_id="notes")
        job = self.store.get_job("t1", accepted.job_id)
        assert job is not None
        return job

    def searchable_chunks(self, document_id: str) -> int:
        return self.index.count(scope_to_tenant({"document_id": document_id}, "t1"))


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    settings = Settings(
        data_dir=tmp_path, chunk_size=32, chunk_overlap=4, max_ingest_attempts=1, ingest_max_receives=LAST_RECEIVE
    )
    store = SqliteMetadataStore(settings.metadata_db)
    index = EmbeddedVectorIndex(settings.vector_dir, DIM, snapshot_interval_seconds=0)
    embedder = HashEmbedder()
    bus = InProcessEventBus()
    ingest = IngestService(
        settings, store, store, FilesystemBlobStore(settings.blob_dir), lambda: index, lambda: embedder, bus
    )
    built = World(settings, store, index, embedder, ingest)
    bus.subscribe(built.events.append)
    yield built
    index.close()


def raises(error: Exception) -> Callable[..., Any]:
    def fail(*_: Any, **__: Any) -> Any:
        raise error

    return fail


# Each path fails version 2 and returns its job and the reason the document must give.
def bad_file_on_the_worker(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    job = w.upload(NO_TEXT)
    w.worker().run_once()
    with pytest.raises(DocumentParseError) as unreadable:  # the parser's own words are the reason
        extract_passages(w.store.get_document("t1", job.document_id), w.ingest.blobs, w.embedder)
    return job, str(unreadable.value)


def out_of_attempts_on_the_worker(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    job = w.upload(VERSION_2)
    mp.setattr(w.embedder, "embed_documents", raises(DependencyUnavailable("the embedding model is down")))
    w.worker().run_once()
    return job, "gave up after 1 attempts: the embedding model is down"


def domain_error_on_the_worker(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    job = w.upload(VERSION_2)
    mp.setattr(w.ingest, "process", raises(Unprocessable("the file is not what it claims")))
    w.worker().run_once()
    return job, "the file is not what it claims"


def bug_on_the_worker(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    job = w.upload(VERSION_2)
    mp.setattr(w.ingest, "process", raises(KeyError("page")))
    w.worker().run_once()
    return job, INTERNAL_ERROR


def interrupted_too_often(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    job = w.upload(VERSION_2)
    assert w.store.claim(job.id) is not None  # then the process died
    w.worker().recover()
    return job, "ingestion was interrupted 1 times; giving up"


def domain_error_on_the_message_handler(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    job = w.upload(VERSION_2)
    mp.setattr(w.ingest, "process", raises(Unprocessable("the file is not what it claims")))
    w.handler().handle(json.dumps(job_message(job)))
    return job, "the file is not what it claims"


def released_on_the_last_delivery(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    # Only the receive count stops it: process() releases the job for SQS to bring back.
    mp.setattr(w.ingest, "settings", w.settings.model_copy(update={"max_ingest_attempts": 50}))
    job = w.upload(VERSION_2)
    mp.setattr(w.embedder, "embed_documents", raises(DependencyUnavailable("the embedding model is down")))
    with pytest.raises(RetryLater):
        w.handler().handle(json.dumps(job_message(job)), receive_count=LAST_RECEIVE)
    return job, "gave up after 1 attempts: the embedding model is down"


def dependency_down_on_the_last_delivery(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    job = w.upload(VERSION_2)
    mp.setattr(w.ingest, "process", raises(DependencyUnavailable("DynamoDB answered 503")))
    with pytest.raises(RetryLater):
        w.handler().handle(json.dumps(job_message(job)), receive_count=LAST_RECEIVE)
    return job, "gave up after 1 attempts: DynamoDB answered 503"


def bug_on_the_last_delivery(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    job = w.upload(VERSION_2)
    mp.setattr(w.ingest, "process", raises(KeyError("page")))
    with pytest.raises(KeyError):
        w.handler().handle(json.dumps(job_message(job)), receive_count=LAST_RECEIVE)
    return job, INTERNAL_ERROR


def stored_but_not_deliverable(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    queue = SqsJobQueue(w.store, "https://sqs.us-east-1.amazonaws.com/123456789012/ingest", client=SqsDown())  # type: ignore[arg-type]
    ingest = IngestService(
        w.settings, w.store, queue, w.ingest.blobs, lambda: w.index, lambda: w.embedder, w.ingest.events
    )
    with pytest.raises(JobUndeliverable) as refused:
        w.upload(VERSION_2, ingest=ingest)
    assert refused.value.status == 503
    (job_id,) = [e["data"]["job_id"] for e in w.events if e["type"] == "error.ingestion"]
    job = w.store.get_job("t1", job_id)
    assert job is not None
    return job, "could not queue the ingestion job: the ingest queue (SQS) is unreachable: " + str(
        EndpointConnectionError(endpoint_url="https://sqs.us-east-1.amazonaws.com")
    )


PATHS = [
    bad_file_on_the_worker,
    out_of_attempts_on_the_worker,
    domain_error_on_the_worker,
    bug_on_the_worker,
    interrupted_too_often,
    domain_error_on_the_message_handler,
    released_on_the_last_delivery,
    dependency_down_on_the_last_delivery,
    bug_on_the_last_delivery,
    stored_but_not_deliverable,
]


def outcome(w: World, document: Document, job: Job) -> dict[str, Any]:
    doc = w.store.get_document("t1", document.id)
    finished = w.store.get_job("t1", job.id)
    assert doc is not None and finished is not None
    return {
        "status": doc.status,
        "error": doc.error,
        "chunk_count": doc.chunk_count,
        "searchable_chunks": w.searchable_chunks(doc.id),
        "job": (finished.status, finished.error),
        "events": [(e["tenant_id"], e["data"]) for e in w.events if e["type"] == "error.ingestion"],
    }


@pytest.mark.parametrize("fail", PATHS, ids=[path.__name__ for path in PATHS])
def test_every_path_fails_a_document_the_same_way(world: World, monkeypatch, fail) -> None:
    first = world.upload(VERSION_1)
    world.worker().run_once()
    indexed = world.store.get_document("t1", first.document_id)
    assert indexed is not None and indexed.status == DocumentStatus.INDEXED
    assert world.searchable_chunks(indexed.id) == indexed.chunk_count > 0

    job, reason = fail(world, monkeypatch)

    assert job.document_id == indexed.id  # version 2 of the same document
    assert outcome(world, indexed, job) == {
        "status": DocumentStatus.FAILED,
        "error": reason,
        "chunk_count": 0,
        "searchable_chunks": 0,
        "job": (JobStatus.FAILED, reason),
        "events": [("t1", {"document_id": indexed.id, "job_id": job.id, "error": reason})],
    }


def test_a_document_deleted_meanwhile_only_has_its_job_finished(world: World) -> None:
    job = world.upload(VERSION_1)
    world.store.update_document("t1", job.document_id, status=DocumentStatus.DELETING)
    assert world.ingest.fail_job(job, "too late") is None
    assert world.store.get_document("t1", job.document_id).status == DocumentStatus.DELETING
    assert world.store.get_job("t1", job.id).error == "too late"
    assert [e for e in world.events if e["type"] == "error.ingestion"] == []
