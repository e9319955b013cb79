"""The job queue on AWS: job state in DynamoDB (the metadata store), delivery by SQS.

``enqueue`` writes the document and its job in one DynamoDB transaction, then sends one SQS
message naming the job. The ingest function claims the job by id with a conditional write, so a
duplicate or redelivered message claims nothing (or takes back a claim its crashed predecessor
left, once that claim is older than the function's timeout). Nothing polls DynamoDB for work:
``claim()`` without an id finds none, because SQS decides who works on what.
"""

from __future__ import annotations

import json
from typing import Any

from ragline.adapters.aws import clients
from ragline.adapters.aws.dynamodb.store import DynamoMetadataStore
from ragline.errors import DependencyUnavailable, JobUndeliverable
from ragline.ingest.messages import JOB_MESSAGE_KIND, job_message
from ragline.models import Document, Job


class SqsJobQueue:
    def __init__(
        self,
        store: DynamoMetadataStore,
        queue_url: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        self.store = store
        self.queue_url = queue_url
        self._client = clients.ServiceClient("sqs", region=region, endpoint_url=endpoint_url, given=client)

    @property
    def _sqs(self) -> Any:
        return self._client()

    def enqueue(self, job: Job, document: Document | None = None) -> None:
        self.store.enqueue(job, document)
        try:
            self.send(job)
        except DependencyUnavailable as exc:
            # Stored but undeliverable: nothing would ever run it. IngestService fails the document.
            raise JobUndeliverable(f"could not queue the ingestion job: {exc.message}", error=exc.error) from exc

    def send(self, job: Job) -> None:
        with clients.unavailable_when_down("the ingest queue (SQS)"):
            self._sqs.send_message(
                QueueUrl=self.queue_url,
                MessageBody=json.dumps(job_message(job), separators=(",", ":")),
                MessageAttributes={"kind": {"DataType": "String", "StringValue": JOB_MESSAGE_KIND}},
            )

    def claim(self, job_id: str | None = None, *, stale_before: str | None = None) -> Job | None:
        if job_id is None:
            return None
        return self.store.claim(job_id, stale_before=stale_before)

    def finish(self, job_id: str, *, error: str | None = None) -> None:
        self.store.finish(job_id, error=error)

    def release(self, job_id: str, *, error: str) -> None:
        """Back to queued; the ingest function then fails the record, so SQS redelivers it later."""
        self.store.release(job_id, error=error)

    def latest_job_id(self, tenant_id: str, document_id: str) -> str | None:
        return self.store.latest_job_id(tenant_id, document_id)

    def recover_interrupted(self, max_attempts: int) -> list[Job]:
        # Only for one worker recovering its own crash. On the AWS backend (deployed or emulated)
        # nothing calls it: SQS redelivers the message and the stale claim is taken back.
        return self.store.recover_interrupted(max_attempts)
