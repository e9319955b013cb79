"""What the ingest function does with one SQS message: run a queued job, or apply an S3 event.

Messages on the ingest queue are of four kinds:
- a job message, sent by ``enqueue`` after an API/CLI upload was accepted;
- a knowledge-base purge message, sent when a knowledge base is deleted (``SqsPurgeScheduler``): the
  purge is idempotent, and one cut short (timeout, crash, chunks still in the index) fails the message,
  so SQS delivers it again;
- an S3 event notification for ``inbox/<tenant>/<path>`` (the S3 drop folder, applied by the
  drop-folder rule it shares with the local inbox, ``DropFolder``: created → ingest, overwritten →
  new version, removed → delete) or ``uploads/<tenant>/<document>/<file>`` (the bytes of a
  presigned upload arrived);
- S3's ``s3:TestEvent``, sent once when the notification is configured (ignored).

Every action is idempotent, because SQS delivers at least once and not in order: a job is
claimed with a conditional write (a finished job is never redone); an S3 event is applied by
reading the object's *current* state, not the event's (a late "created" for an object removed
since is ignored, a late "removed" for an object re-created since too), and identical bytes are
deduplicated by hash. A message that must be seen again raises ``RetryLater``: the function
reports it as a batch item failure, SQS redelivers it after the visibility timeout, and after
``ingest_max_receives`` receives it goes to the dead-letter queue — on that last receive the
document is marked failed and ``error.ingestion`` is published first.

A burst of the S3 drop folder (one ``sync.completed`` per tenant it changed) is one batch of
messages handled by one invocation of the ingest function (``drop_folder_burst`` around the
batch): the event source mapping gathers up to 5 messages for up to 5 seconds, so a large drop
is told by several ``sync.completed`` whose counts add up. A notification that must come back
(RetryLater, or a dependency down) counts in the burst that finally applies it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

from ragline.config import Settings
from ragline.errors import DependencyUnavailable, NotFound, RaglineError
from ragline.ingest.dropfolder import INBOX_PREFIX, DropBurst, DropFolder
from ragline.ingest.service import INTERNAL_ERROR, IngestService
from ragline.models import Job, JobStatus
from ragline.ports import BlobStore, JobQueue, MetadataStore

log = logging.getLogger(__name__)

UPLOADS_PREFIX = "uploads/"
JOB_MESSAGE_KIND = "ragline.ingest-job"
KB_PURGE_KIND = "ragline.kb-purge"


class RetryLater(Exception):
    """This message must be delivered again later (a batch item failure, not an error)."""


class PoisonMessage(ValueError):
    """A message no retry can make sense of."""


@dataclass(frozen=True)
class JobMessage:
    job_id: str
    tenant_id: str
    document_id: str


@dataclass(frozen=True)
class KbPurgeMessage:
    tenant_id: str
    kb_id: str


def kb_purge_message(tenant_id: str, kb_id: str) -> dict[str, str]:
    return {"kind": KB_PURGE_KIND, "tenant_id": tenant_id, "kb_id": kb_id}


@dataclass(frozen=True)
class ObjectEvent:
    bucket: str
    key: str  # decoded: S3 sends keys URL-encoded, spaces as '+'
    created: bool  # False: removed


def job_message(job: Job) -> dict[str, str]:
    """The body of a job's SQS message: what ``enqueue`` sends and ``parse_message`` reads."""
    return {"kind": JOB_MESSAGE_KIND, "job_id": job.id, "tenant_id": job.tenant_id, "document_id": job.document_id}


def parse_message(body: str) -> list[JobMessage | KbPurgeMessage | ObjectEvent]:
    """The actions one SQS message body asks for (an S3 notification may carry several records)."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError as exc:
        raise PoisonMessage(f"the body is not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise PoisonMessage("the body is not a JSON object")
    if message.get("kind") == JOB_MESSAGE_KIND:
        fields = [message.get(name) for name in ("job_id", "tenant_id", "document_id")]
        if not all(isinstance(value, str) and value for value in fields):
            raise PoisonMessage("a job message needs job_id, tenant_id and document_id")
        return [JobMessage(*fields)]
    if message.get("kind") == KB_PURGE_KIND:
        tenant_id, kb_id = message.get("tenant_id"), message.get("kb_id")
        if not (isinstance(tenant_id, str) and tenant_id and isinstance(kb_id, str) and kb_id):
            raise PoisonMessage("a knowledge-base purge message needs tenant_id and kb_id")
        return [KbPurgeMessage(tenant_id, kb_id)]
    if message.get("Event") == "s3:TestEvent":
        return []
    records = message.get("Records")
    if not isinstance(records, list):
        raise PoisonMessage("neither a job message nor an S3 event notification")
    return [_object_event(record) for record in records]


def _object_event(record: Any) -> ObjectEvent:
    try:
        name = str(record["eventName"])
        bucket = str(record["s3"]["bucket"]["name"])
        key = unquote_plus(str(record["s3"]["object"]["key"]))
    except (KeyError, TypeError) as exc:
        raise PoisonMessage(f"an S3 event record lacks {exc}") from exc
    if name.startswith("ObjectCreated:"):
        return ObjectEvent(bucket, key, created=True)
    if name.startswith("ObjectRemoved:"):
        return ObjectEvent(bucket, key, created=False)
    raise PoisonMessage(f"unexpected S3 event {name!r}")


def stale_claim_cutoff(now: datetime, reclaim_after_seconds: float) -> str:
    """Claims made before this instant were left by a worker that has died (its timeout has passed)."""
    cutoff = now - timedelta(seconds=reclaim_after_seconds)
    return cutoff.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class IngestMessageHandler:
    def __init__(
        self,
        settings: Settings,
        ingest: IngestService,
        queue: JobQueue,
        store: MetadataStore,
        *,
        inbox: BlobStore | None,
        upload_drop: BlobStore | None,
        upload_claims: BlobStore | None,
        purge_kb: Callable[[str, str], object] | None = None,
    ) -> None:
        self.settings = settings
        self.ingest = ingest
        self.queue = queue
        self.store = store
        self.drop_folder = DropFolder(ingest, inbox="s3")
        self.inbox = inbox
        self.upload_drop = upload_drop
        self.upload_claims = upload_claims
        self.purge_kb = purge_kb

    def drop_folder_burst(self) -> AbstractContextManager[DropBurst]:
        """The messages handled inside make one drop-folder burst (the function wraps each batch in
        it); a message handled outside is a burst of its own."""
        return self.drop_folder.burst()

    def handle(self, body: str, *, receive_count: int = 1) -> None:
        """Apply one message. Raises RetryLater (or a transient error) when it must come back."""
        last_delivery = receive_count >= self.settings.ingest_max_receives
        for action in parse_message(body):
            if isinstance(action, JobMessage):
                self._run_job(action, last_delivery)
            elif isinstance(action, KbPurgeMessage):
                if self.purge_kb is None:
                    raise PoisonMessage("this handler cannot purge knowledge bases")
                self.purge_kb(action.tenant_id, action.kb_id)
            else:
                self._apply_object_event(action)

    # ---- jobs -----------------------------------------------------------------------------------------
    def _run_job(self, message: JobMessage, last_delivery: bool) -> None:
        cutoff = stale_claim_cutoff(datetime.now(UTC), self.settings.ingest_reclaim_after_seconds)
        job = self.queue.claim(message.job_id, stale_before=cutoff)
        if job is None:
            current = self.store.get_job(message.tenant_id, message.job_id)
            if current is None or current.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
                log.info("job %s already ran (or is gone): nothing to do", message.job_id)
                return
            # Someone holds a live claim: if it dies, its claim goes stale and this message wins.
            raise RetryLater(f"job {message.job_id} is {current.status.value} elsewhere")
        try:
            self.ingest.process(job)
        except DependencyUnavailable as exc:
            # DynamoDB or SNS down mid-way: not the document's fault. SQS brings the message back;
            # an unfinished claim goes stale and is taken back, a finished job is not redone.
            log.warning("ingest job %s: %s; it will be retried", job.id, exc.message)
            if last_delivery:
                self.ingest.fail_job(job, f"gave up after {job.attempts} attempts: {exc.message}")
            raise RetryLater(exc.message) from exc
        except RaglineError as exc:
            log.error("ingest job %s failed: %s", job.id, exc.message)
            self.ingest.fail_job(job, exc.message)
            return
        except Exception:
            # A bug: SQS retries it; on the last delivery the document is failed first, then the
            # message goes to the dead-letter queue with its stack trace in the logs.
            log.exception("ingest job %s crashed (delivery %s)", job.id, "last" if last_delivery else "not last")
            if last_delivery:
                self.ingest.fail_job(job, INTERNAL_ERROR)
            raise
        self._retry_if_released(job, last_delivery)

    def _retry_if_released(self, job: Job, last_delivery: bool) -> None:
        after = self.store.get_job(job.tenant_id, job.id)
        if after is None or after.status != JobStatus.QUEUED:
            return
        # process() gave the job back after a transient failure: SQS brings the message back.
        if last_delivery:
            self.ingest.fail_job(after, f"gave up after {after.attempts} attempts: {after.error}")
        raise RetryLater(f"job {job.id} hit a transient failure: {after.error}")

    # ---- S3 events --------------------------------------------------------------------------------------
    def _apply_object_event(self, event: ObjectEvent) -> None:
        if event.bucket != self.settings.documents_bucket:
            log.warning("ignoring an event from bucket %s (not %s)", event.bucket, self.settings.documents_bucket)
            return
        if event.key.startswith(INBOX_PREFIX):
            self._apply_inbox_event(event.key[len(INBOX_PREFIX) :], event.created)
        elif event.key.startswith(UPLOADS_PREFIX) and event.created:
            self._receive_upload(event.key[len(UPLOADS_PREFIX) :])
        else:
            log.info("ignoring an event for %s", event.key)

    def _apply_inbox_event(self, relative: str, created: bool) -> None:
        inbox = _configured(self.inbox, "the S3 inbox")

        def current() -> bytes | None:
            try:
                return inbox.get(relative)
            except NotFound:
                return None

        self.drop_folder.apply(relative, current, expected=created)

    def _receive_upload(self, relative: str) -> None:
        drop = _configured(self.upload_drop, "the presigned upload area")
        claims_store = _configured(self.upload_claims, "the upload claims")
        parts = relative.split("/", 2)
        if len(parts) != 3:
            log.warning("uploads: %s is not <tenant>/<document>/<file>; ignoring it", relative)
            return
        tenant, document_id, _ = parts
        claims_key = f"{tenant}/{document_id}.json"
        try:
            claims = json.loads(claims_store.get(claims_key))
        except NotFound:
            log.warning("uploads: %s has no upload claims (already ingested, or not issued by Ragline)", relative)
            return
        if claims.get("tenant_id") != tenant or claims.get("document_id") != document_id:
            log.warning("uploads: %s does not match the claims it was issued with; ignoring it", relative)
            return
        try:
            data = drop.get(relative)
        except NotFound:
            return  # a redelivery after the bytes were taken in
        accepted = self.ingest.accept_or_report(
            tenant,
            {"document_id": document_id},
            data,
            filename=claims.get("filename"),
            content_type=claims.get("content_type"),
            metadata=claims.get("metadata") or {},
            kb_id=claims.get("kb_id"),
            document_id=document_id,
            source="api",
        )
        if accepted is not None and not accepted.duplicate:
            log.info("uploads: %s queued as %s (job %s)", relative, accepted.document.id, accepted.job_id)
        # The original is kept under originals/ now; the staging copies would only cost money.
        drop.delete(relative)
        claims_store.delete(claims_key)


def _configured(store: BlobStore | None, what: str) -> BlobStore:
    if store is None:
        raise RuntimeError(f"{what} is only configured on the aws backend")
    return store
