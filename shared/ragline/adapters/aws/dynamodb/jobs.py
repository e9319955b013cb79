"""Job state (the persistence side of the JobQueue port), on the Table.

Deployed, SQS carries the jobs; the job items still hold status, attempts and errors, and a
claim is what makes a redelivered message harmless. ``claim()`` without an id takes the oldest
queued job (as the local worker does), through the sparse ``by_job_state`` index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ragline.adapters.aws.dynamodb.documents import document_writes, is_content_claim
from ragline.adapters.aws.dynamodb.table import (
    BY_DOCUMENT,
    BY_JOB_STATE,
    Expression,
    Table,
    deserialize,
    document_key,
    jobs_of_document,
    serialize,
)
from ragline.errors import DuplicateContent
from ragline.models import Document, Job, JobStatus, utcnow

JOB_FIELDS = frozenset(Job.model_fields)
# A job is in the by_job_state index only while it is waiting or running.
ACTIVE_JOB_STATES = (JobStatus.QUEUED, JobStatus.PROCESSING)


def job_key(job_id: str) -> dict[str, str]:
    return {"pk": f"JOB#{job_id}", "sk": "JOB"}


def job_state(status: JobStatus) -> str:
    """The ``by_job_state`` index value of an active job."""
    return f"JOBS#{status.value}"


def job_item(job: Job) -> dict[str, Any]:
    fields = job.model_dump(mode="json", exclude_none=True)
    item = {**fields, **job_key(job.id), "job_document_key": jobs_of_document(job.tenant_id, job.document_id)}
    if job.status in ACTIVE_JOB_STATES:
        item["job_state_key"] = job_state(job.status)
    return item


def job_from_item(item: Mapping[str, Any]) -> Job:
    return Job.model_validate({name: value for name, value in item.items() if name in JOB_FIELDS})


class DynamoJobs:
    table: Table

    def get_job(self, tenant_id: str, job_id: str) -> Job | None:
        item = self.table.get(job_key(job_id))
        if item is None or item.get("tenant_id") != tenant_id:
            return None
        return job_from_item(item)

    def latest_job_id(self, tenant_id: str, document_id: str) -> str | None:
        for entry in self.table.index_entries(
            BY_DOCUMENT, jobs_of_document(tenant_id, document_id), newest_first=True, page_size=1
        ):
            return str(entry["id"])
        return None

    def enqueue(self, job: Job, document: Document | None = None) -> None:
        """Write the document (new, or its new version) and its job in one transaction.

        DuplicateContent: another live document without an external id has these bytes."""
        actions = []
        if document is not None:
            current = self.table.get(document_key(document.tenant_id, document.id))
            actions += document_writes(self.table, document, current)
        actions.append(self.table.put_new_action(job_item(job)))
        duplicate = {
            position: DuplicateContent(f"tenant {job.tenant_id} already has these bytes")
            for position, action in enumerate(actions)
            if is_content_claim(action)
        }
        self.table.transact(
            actions,
            f"job {job.id} or its document conflicts with an existing one (or changed meanwhile)",
            failed_at=duplicate,
        )

    def claim(self, job_id: str | None = None, *, stale_before: str | None = None) -> Job | None:
        """Take that job (or the oldest queued one): queued → processing, attempts + 1, atomically.

        None when the job is not queued (already claimed, finished, unknown): a second delivery of
        the same SQS message claims nothing, unless the claim it finds is older than ``stale_before``.
        """
        if job_id is not None:
            return self._claim_one(job_id, stale_before)
        for entry in self.table.index_entries(BY_JOB_STATE, job_state(JobStatus.QUEUED)):
            claimed = self._claim_one(str(entry["id"]))  # None: another worker was faster
            if claimed is not None:
                return claimed
        return None

    def _claim_one(self, job_id: str, stale_before: str | None = None) -> Job | None:
        values = {
            "status": JobStatus.PROCESSING.value,
            "updated_at": utcnow(),
            "job_state_key": job_state(JobStatus.PROCESSING),
        }
        if stale_before is None:
            item = self.table.update_existing(
                job_key(job_id), values, required={"status": JobStatus.QUEUED.value}, adds={"attempts": 1}
            )
            return job_from_item(item) if item else None
        expression = Expression()
        status, updated = expression.name("status"), expression.name("updated_at")
        update = expression.update(values, adds={"attempts": 1})
        # Timestamps are fixed-width ISO strings, so string order is time order.
        condition = (
            f"attribute_exists({expression.name('pk')}) AND ({status} = {expression.value(JobStatus.QUEUED.value)}"
            f" OR ({status} = {expression.value(JobStatus.PROCESSING.value)}"
            f" AND {updated} < {expression.value(stale_before)}))"
        )
        answer = self.table.write_if(
            "update_item",
            Key=serialize(job_key(job_id)),
            UpdateExpression=update,
            ConditionExpression=condition,
            ReturnValues="ALL_NEW",
            **expression.arguments(),
        )
        return None if answer is None else job_from_item(deserialize(answer["Attributes"]))

    def finish(self, job_id: str, *, error: str | None = None) -> None:
        status = JobStatus.FAILED if error else JobStatus.SUCCEEDED
        values = {"status": status.value, "error": error, "updated_at": utcnow(), "job_state_key": None}
        self.table.update_existing(job_key(job_id), values)  # an unknown job is no error, as in SQLite

    def release(self, job_id: str, *, error: str) -> None:
        values = {
            "status": JobStatus.QUEUED.value,
            "error": error,
            "updated_at": utcnow(),
            "job_state_key": job_state(JobStatus.QUEUED),
        }
        self.table.update_existing(job_key(job_id), values)

    def recover_interrupted(self, max_attempts: int) -> list[Job]:
        """After a crash: re-queue jobs left processing; return (as they were) the ones out of attempts.

        Only for one worker recovering its own crash (the local worker, an emulated-AWS poller):
        it cannot tell a crashed worker's job from a running one's. Deployed, nothing calls it;
        SQS redelivers the message of a crashed invocation once its visibility timeout ends.
        """
        exhausted: list[Job] = []
        for entry in self.table.index_entries(BY_JOB_STATE, job_state(JobStatus.PROCESSING)):
            item = self.table.get(job_key(str(entry["id"])))
            if item is None or item.get("status") != JobStatus.PROCESSING.value:
                continue  # the index lags behind the table
            job = job_from_item(item)
            required = {"status": JobStatus.PROCESSING.value, "attempts": job.attempts}
            if job.attempts >= max_attempts:
                values = {
                    "status": JobStatus.FAILED.value,
                    "error": "interrupted too many times",
                    "updated_at": utcnow(),
                    "job_state_key": None,
                }
                if self.table.update_existing(job_key(job.id), values, required=required) is not None:
                    exhausted.append(job)
            else:
                values = {
                    "status": JobStatus.QUEUED.value,
                    "updated_at": utcnow(),
                    "job_state_key": job_state(JobStatus.QUEUED),
                }
                self.table.update_existing(job_key(job.id), values, required=required)
        return exhausted

    def queued_count(self) -> int:
        return self.table.index_count(BY_JOB_STATE, job_state(JobStatus.QUEUED))
