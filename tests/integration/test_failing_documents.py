"""Every way a document can fail ends the same way (IngestService.fail_job): status `failed` with a
readable error, no searchable chunk left (not even the previous version's), the job finished with
the same error, and one `error.ingestion` event {document_id, job_id, error}.

Each row fails version 2 of a document whose version 1 is indexed, through one code path: the
local worker, its crash recovery, the SQS message handler, or an SQS queue that cannot take the job.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from ragline.adapters.aws.sqs_queue import SqsJobQueue
from ragline.errors import DependencyUnavailable, DocumentParseError, JobUndeliverable, Unprocessable
from ragline.ingest.messages import RetryLater, job_message
from ragline.ingest.service import INTERNAL_ERROR, IngestService, extract_passages
from ragline.models import Document, DocumentStatus, Job, JobStatus
from ragline.retrieval.filters import parse_filter
from tests.integration.local_world import World, open_world

VERSION_1 = b"Sea otters hold hands while they sleep so that they do not drift apart."
VERSION_2 = b"Suspension bridges carry their deck on vertical hangers from two main cables."
NO_TEXT = b" \n\t \n"
LAST_RECEIVE = 5


class SqsDown:
    def send_message(self, **_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://sqs.us-east-1.amazonaws.com")


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    opened = open_world(tmp_path, max_ingest_attempts=1, ingest_max_receives=LAST_RECEIVE)
    yield opened
    opened.close()


def upload(w: World, data: bytes, ingest: IngestService | None = None) -> Job:
    """A version of the document "notes" (one external id), accepted and queued."""
    accepted = (ingest or w.ingest).accept("t1", data, filename="notes.txt", external_id="notes")
    job = w.store.get_job("t1", accepted.job_id)
    assert job is not None
    return job


def searchable_chunks(w: World, document_id: str) -> int:
    return w.index.count("t1", parse_filter({"document_id": document_id}))


def raises(error: Exception) -> Callable[..., Any]:
    def fail(*_: Any, **__: Any) -> Any:
        raise error

    return fail


# Each path fails version 2 and returns its job and the reason the document must give.
def bad_file_on_the_worker(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    job = upload(w, NO_TEXT)
    w.worker().run_once()
    with pytest.raises(DocumentParseError) as unreadable:  # the parser's own words are the reason
        extract_passages(w.store.get_document("t1", job.document_id), w.ingest.blobs, w.embedder)
    return job, str(unreadable.value)


def out_of_attempts_on_the_worker(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    job = upload(w, VERSION_2)
    mp.setattr(w.embedder, "embed_documents", raises(DependencyUnavailable("the embedding model is down")))
    w.worker().run_once()
    return job, "gave up after 1 attempts: the embedding model is down"


def domain_error_on_the_worker(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    job = upload(w, VERSION_2)
    mp.setattr(w.ingest, "process", raises(Unprocessable("the file is not what it claims")))
    w.worker().run_once()
    return job, "the file is not what it claims"


def bug_on_the_worker(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    job = upload(w, VERSION_2)
    mp.setattr(w.ingest, "process", raises(KeyError("page")))
    w.worker().run_once()
    return job, INTERNAL_ERROR


def interrupted_too_often(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    job = upload(w, VERSION_2)
    assert w.store.claim(job.id) is not None  # then the process died
    w.worker().recover()
    return job, "ingestion was interrupted 1 times; giving up"


def domain_error_on_the_message_handler(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    job = upload(w, VERSION_2)
    mp.setattr(w.ingest, "process", raises(Unprocessable("the file is not what it claims")))
    w.handler().handle(json.dumps(job_message(job)))
    return job, "the file is not what it claims"


def released_on_the_last_delivery(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    # Only the receive count stops it: process() releases the job for SQS to bring back.
    mp.setattr(w.ingest, "settings", w.settings.model_copy(update={"max_ingest_attempts": 50}))
    job = upload(w, VERSION_2)
    mp.setattr(w.embedder, "embed_documents", raises(DependencyUnavailable("the embedding model is down")))
    with pytest.raises(RetryLater):
        w.handler().handle(json.dumps(job_message(job)), receive_count=LAST_RECEIVE)
    return job, "gave up after 1 attempts: the embedding model is down"


def dependency_down_on_the_last_delivery(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    job = upload(w, VERSION_2)
    mp.setattr(w.ingest, "process", raises(DependencyUnavailable("DynamoDB answered 503")))
    with pytest.raises(RetryLater):
        w.handler().handle(json.dumps(job_message(job)), receive_count=LAST_RECEIVE)
    return job, "gave up after 1 attempts: DynamoDB answered 503"


def bug_on_the_last_delivery(w: World, mp: pytest.MonkeyPatch) -> tuple[Job, str]:
    job = upload(w, VERSION_2)
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
        upload(w, VERSION_2, ingest=ingest)
    assert refused.value.status == 503
    (job_id,) = [e["data"]["job_id"] for e in w.published("error.ingestion")]
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
        "searchable_chunks": searchable_chunks(w, doc.id),
        "job": (finished.status, finished.error),
        "events": [(e["tenant_id"], e["data"]) for e in w.published("error.ingestion")],
    }


@pytest.mark.parametrize("fail", PATHS, ids=[path.__name__ for path in PATHS])
def test_every_path_fails_a_document_the_same_way(world: World, monkeypatch, fail) -> None:
    first = upload(world, VERSION_1)
    world.worker().run_once()
    indexed = world.store.get_document("t1", first.document_id)
    assert indexed is not None and indexed.status == DocumentStatus.INDEXED
    assert searchable_chunks(world, indexed.id) == indexed.chunk_count > 0

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
    job = upload(world, VERSION_1)
    world.store.update_document("t1", job.document_id, status=DocumentStatus.DELETING)
    assert world.ingest.fail_job(job, "too late") is None
    assert world.store.get_document("t1", job.document_id).status == DocumentStatus.DELETING
    assert world.store.get_job("t1", job.id).error == "too late"
    assert world.published("error.ingestion") == []
