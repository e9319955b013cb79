"""The ingest queue's message language, table-style: job messages, S3 notifications, poison."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ragline.ingest.dropfolder import drop_target
from ragline.ingest.messages import JobMessage, ObjectEvent, PoisonMessage, parse_message, stale_claim_cutoff
from ragline_emulator.event_sources import failed_message_ids, queue_arn_from_url, sqs_event


def s3_notification(*records: tuple[str, str]) -> str:
    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": name,
                    "s3": {"bucket": {"name": "docs"}, "object": {"key": key, "size": 3, "sequencer": "0A1"}},
                }
                for name, key in records
            ]
        }
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '{"kind":"ragline.ingest-job","job_id":"job_1","tenant_id":"t1","document_id":"doc_1"}',
            [JobMessage("job_1", "t1", "doc_1")],
        ),
        (s3_notification(("ObjectCreated:Put", "inbox/t1/a.txt")), [ObjectEvent("docs", "inbox/t1/a.txt", True)]),
        # S3 URL-encodes keys, spaces as '+', and a literal '+' as %2B
        (
            s3_notification(("ObjectCreated:CompleteMultipartUpload", "inbox/t1/my+notes%2B%C3%A9.txt")),
            [ObjectEvent("docs", "inbox/t1/my notes+é.txt", True)],
        ),
        (s3_notification(("ObjectRemoved:Delete", "inbox/t1/a.txt")), [ObjectEvent("docs", "inbox/t1/a.txt", False)]),
        (
            s3_notification(
                ("ObjectRemoved:DeleteMarkerCreated", "inbox/t1/a.txt"), ("ObjectCreated:Copy", "uploads/t1/d/x.pdf")
            ),
            [ObjectEvent("docs", "inbox/t1/a.txt", False), ObjectEvent("docs", "uploads/t1/d/x.pdf", True)],
        ),
        ('{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"docs"}', []),
    ],
)
def test_parse_message(body: str, expected: list[object]) -> None:
    assert parse_message(body) == expected


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"hello": "world"}', "neither a job message"),
        ('{"kind":"ragline.ingest-job","job_id":"job_1","tenant_id":""}', "needs job_id"),
        ('{"Records":[{"eventName":"ObjectCreated:Put"}]}', "lacks"),
        (s3_notification(("ObjectRestore:Completed", "inbox/t1/a.txt")), "unexpected S3 event"),
    ],
)
def test_poison_messages_say_why(body: str, reason: str) -> None:
    with pytest.raises(PoisonMessage, match=reason):
        parse_message(body)


@pytest.mark.parametrize(
    ("relative", "tenant"),
    [
        ("t1/a.txt", "t1"),
        ("t1/deep/er/b.pdf", "t1"),
        ("a.txt", None),  # no tenant folder
        ("t1/", None),  # a "folder" object
        ("t1/.hidden", None),
        ("t1/draft.docx.part", None),
        ("bad tenant/a.txt", None),
    ],
)
def test_drop_target(relative: str, tenant: str | None) -> None:
    assert drop_target(relative) == tenant


def test_stale_claim_cutoff_is_a_comparable_timestamp() -> None:
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    assert stale_claim_cutoff(now, 900) == "2026-11-22T11:45:00.000Z"


def _event(*ids: str) -> dict[str, object]:
    messages = [
        {"MessageId": i, "ReceiptHandle": f"rh-{i}", "Body": "{}", "Attributes": {"ApproximateReceiveCount": 1}}
        for i in ids
    ]
    return sqs_event(messages, "arn:aws:sqs:us-east-1:000000000000:q", "us-east-1")


@pytest.mark.parametrize(
    ("response", "failed"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, {"a", "b", "c"}),  # unknown id: whole batch
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b", "c"}),
    ],
)
def test_batch_item_failures_read_as_lambda_reads_them(response: dict | None, failed: set[str]) -> None:
    assert failed_message_ids(response, _event("a", "b", "c")) == failed


def test_sqs_event_has_lambdas_record_shape() -> None:
    record = _event("a")["Records"][0]
    assert record["eventSource"] == "aws:sqs"
    assert record["attributes"] == {"ApproximateReceiveCount": "1"}  # strings, as Lambda sends them
    assert set(record) >= {"messageId", "receiptHandle", "body", "md5OfBody", "eventSourceARN", "awsRegion"}
    assert (
        queue_arn_from_url("http://127.0.0.1:5000/123456789012/ingest", "eu-west-1", "123")
        == "arn:aws:sqs:eu-west-1:123:ingest"
    )
