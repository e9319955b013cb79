"""The ingest pipeline on the AWS backend, end to end under moto: queue → real ingest function →
DynamoDB + S3 + embedded vectors + SNS, with redelivery, poison messages and the S3 drop folder."""

from __future__ import annotations

import json

from ragline.adapters.aws.sqs_queue import SqsJobQueue
from ragline.knowledge_bases import CreateKnowledgeBaseRequest
from ragline.models import DocumentStatus, JobStatus, SearchRequest
from ragline.retrieval.filters import Term
from ragline_emulator.event_sources import EmulatedLambdaContext

ABOUT_OTTERS = "Sea otters hold hands while they sleep so that they do not drift apart on the water."
ABOUT_BRIDGES = "Suspension bridges carry their deck on vertical hangers from two main cables."


def search_ids(stack, tenant: str, query: str) -> list[str]:
    response = stack.container.search.search(tenant, SearchRequest(query=query, limit=5))
    return list(dict.fromkeys(hit.payload["document_id"] for hit in response.items))


def test_api_upload_is_queued_on_sqs_and_indexed_by_the_function(aws_env) -> None:
    stack = aws_env()
    assert isinstance(stack.container.queue, SqsJobQueue)
    accepted = stack.container.ingest.accept("t1", ABOUT_OTTERS.encode(), filename="otters.txt")
    assert stack.container.store.get_document("t1", accepted.document.id).status == DocumentStatus.QUEUED

    assert stack.drain() == 1
    doc = stack.container.store.get_document("t1", accepted.document.id)
    assert (doc.status, doc.chunk_count) == (DocumentStatus.INDEXED, 1)
    assert stack.container.store.get_job("t1", accepted.job_id).status == JobStatus.SUCCEEDED
    assert search_ids(stack, "t1", "otters sleeping") == [doc.id]
    assert search_ids(stack, "t2", "otters sleeping") == []  # another tenant sees nothing

    events = stack.events()
    assert [e["type"] for e in events] == ["document.uploaded", "document.indexed"]
    assert all(e["attributes"] == {"event_type": e["type"], "tenant_id": "t1"} for e in events)
    assert stack.container.blobs.get(doc.blob_key) == ABOUT_OTTERS.encode()


def test_a_redelivered_job_message_does_not_index_twice(aws_env) -> None:
    stack = aws_env()
    accepted = stack.container.ingest.accept("t1", ABOUT_OTTERS.encode(), filename="otters.txt")
    job = stack.container.store.get_job("t1", accepted.job_id)
    stack.container.queue.send(job)  # SQS delivers at least once: the same message again
    assert stack.drain() == 2
    job = stack.container.store.get_job("t1", accepted.job_id)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
    assert [e["type"] for e in stack.events()].count("document.indexed") == 1
    assert stack.dead_letters() == []


def test_a_live_claim_sends_the_message_back_and_a_stale_one_is_taken_over(aws_env) -> None:
    stack = aws_env(ingest_reclaim_after_seconds=3600)
    accepted = stack.container.ingest.accept("t1", ABOUT_OTTERS.encode(), filename="otters.txt")
    # Another invocation claimed it a moment ago and is still working: hands off.
    assert stack.container.store.claim(accepted.job_id) is not None
    assert stack.poller.poll_once() == 1
    doc = stack.container.store.get_document("t1", accepted.document.id)
    assert doc.status == DocumentStatus.QUEUED
    body = stack.sqs.receive_message(QueueUrl=stack.resources.ingest_queue_url)["Messages"][0]["Body"]
    assert json.loads(body)["job_id"] == accepted.job_id  # still on the queue

    # That invocation died: once its claim is older than the function's timeout, the message wins.
    stack.container.ingest_messages.settings = stack.container.settings.model_copy(
        update={"ingest_reclaim_after_seconds": 0.001}
    )
    stack.drain()
    job = stack.container.store.get_job("t1", accepted.job_id)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 2)


def test_poison_messages_reach_the_dlq_and_the_rest_of_the_batch_succeeds(aws_env) -> None:
    stack = aws_env()
    queue = stack.resources.ingest_queue_url
    stack.sqs.send_message(QueueUrl=queue, MessageBody="this is not json")
    accepted = stack.container.ingest.accept("t1", ABOUT_BRIDGES.encode(), filename="bridges.txt")
    stack.drain()
    assert stack.container.store.get_document("t1", accepted.document.id).status == DocumentStatus.INDEXED
    assert stack.dead_letters() == ["this is not json"]  # after maxReceiveCount receives, not before


def test_a_job_failing_on_its_last_delivery_is_failed_announced_and_dead_lettered(aws_env, monkeypatch) -> None:
    from ragline.errors import DependencyUnavailable

    stack = aws_env(max_ingest_attempts=50)  # only SQS's receive count stops it
    accepted = stack.container.ingest.accept("t1", ABOUT_OTTERS.encode(), filename="otters.txt")

    def embedder_down(texts):
        raise DependencyUnavailable("the embedding model is down")

    monkeypatch.setattr(stack.container.embedder, "embed_documents", embedder_down)
    stack.drain()
    doc = stack.container.store.get_document("t1", accepted.document.id)
    assert doc.status == DocumentStatus.FAILED
    assert "gave up after 5 attempts" in doc.error
    failures = [e for e in stack.events() if e["type"] == "error.ingestion"]
    assert [f["data"]["document_id"] for f in failures] == [doc.id]
    assert [json.loads(body)["job_id"] for body in stack.dead_letters()] == [accepted.job_id]


def test_s3_drop_folder_create_overwrite_and_remove(aws_env) -> None:
    stack = aws_env()
    bucket = stack.resources.documents_bucket
    key = "inbox/t1/notes/sea otters.txt"  # a space: the notification carries it URL-encoded
    stack.s3.put_object(Bucket=bucket, Key=key, Body=ABOUT_OTTERS.encode())
    stack.drain()
    doc = stack.container.store.find_document("t1", external_id="inbox:t1/notes/sea otters.txt")
    assert doc is not None and doc.status == DocumentStatus.INDEXED and doc.source == "inbox"
    assert search_ids(stack, "t1", "otters sleeping") == [doc.id]

    stack.s3.put_object(Bucket=bucket, Key=key, Body=ABOUT_BRIDGES.encode())  # overwritten: a new version
    stack.drain()
    doc = stack.container.store.get_document("t1", doc.id)
    assert (doc.status, doc.version) == (DocumentStatus.INDEXED, 2)
    assert search_ids(stack, "t1", "suspension bridge cables") == [doc.id]

    stack.s3.delete_object(Bucket=bucket, Key=key)
    stack.drain()
    assert stack.container.store.get_document("t1", doc.id) is None
    assert search_ids(stack, "t1", "suspension bridge cables") == []
    assert stack.container.blobs.exists(doc.blob_key) is False
    events = stack.events()
    types = [e["type"] for e in events if e["type"].startswith("document.")]
    assert types.count("document.indexed") == 2 and types[-1] == "document.deleted"
    assert types.count("document.updated") == 1  # the overwrite
    # Each drain's batch was one burst: added, then updated, then deleted.
    synced = [
        (e["data"]["added"], e["data"]["updated"], e["data"]["deleted"])
        for e in events
        if e["type"] == "sync.completed"
    ]
    assert synced == [(1, 0, 0), (0, 1, 0), (0, 0, 1)]


def test_s3_events_out_of_order_follow_the_objects_current_state(aws_env) -> None:
    stack = aws_env()
    bucket = stack.resources.documents_bucket
    queue = stack.resources.ingest_queue_url

    def notify(event_name: str, key: str) -> None:
        record = {"eventName": event_name, "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}
        stack.sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"Records": [record]}))

    stack.s3.put_object(Bucket=bucket, Key="inbox/t1/a.txt", Body=ABOUT_OTTERS.encode())
    stack.drain()
    doc = stack.container.store.find_document("t1", external_id="inbox:t1/a.txt")
    assert doc is not None
    notify("ObjectRemoved:Delete", "inbox/t1/a.txt")  # a stale removal: the object is there
    notify("ObjectCreated:Put", "inbox/t1/never-there.txt")  # a late creation of a removed object
    stack.drain()
    assert stack.container.store.get_document("t1", doc.id).status == DocumentStatus.INDEXED
    assert stack.container.store.find_document("t1", external_id="inbox:t1/never-there.txt") is None
    assert stack.dead_letters() == []


def test_unsupported_drop_is_reported_not_retried(aws_env) -> None:
    stack = aws_env()
    bucket = stack.resources.documents_bucket
    stack.s3.put_object(Bucket=bucket, Key="inbox/t1/tool.exe", Body=b"MZ\x90\x00\x03" + bytes(range(256)))
    stack.s3.put_object(Bucket=bucket, Key="inbox/not a tenant/x.txt", Body=b"ignored")
    stack.s3.put_object(Bucket=bucket, Key="inbox/t1/.~lock.txt", Body=b"ignored")
    stack.drain()
    failures = [e for e in stack.events() if e["type"] == "error.ingestion"]
    assert [(f["tenant_id"], f["data"]["key"], f["data"]["code"]) for f in failures] == [
        ("t1", "inbox/t1/tool.exe", 415)
    ]
    assert stack.container.store.list_documents("t1")[0] == []
    assert stack.dead_letters() == []


def test_presigned_upload_bytes_arriving_in_s3_are_ingested_with_their_claims(aws_env) -> None:
    stack = aws_env()
    animals = stack.container.knowledge_bases.create("t1", CreateKnowledgeBaseRequest(name="animals"))
    claims = {
        "document_id": "doc_presigned1",
        "tenant_id": "t1",
        "filename": "otters.txt",
        "content_type": "text/plain",
        "metadata": {"team": "marine"},
        "kb_id": animals.id,
    }
    stack.container.upload_claims.put("t1/doc_presigned1.json", json.dumps(claims).encode())
    url = stack.container.upload_drop.presign_put("t1/doc_presigned1/otters.txt", "text/plain", 300)
    assert "uploads/t1/doc_presigned1/otters.txt" in url and "X-Amz-Signature" in url
    # What the client's PUT to that URL does:
    stack.s3.put_object(
        Bucket=stack.resources.documents_bucket, Key="uploads/t1/doc_presigned1/otters.txt", Body=ABOUT_OTTERS.encode()
    )
    stack.drain()
    doc = stack.container.store.get_document("t1", "doc_presigned1")
    assert (doc.status, doc.kb_id, doc.metadata, doc.filename) == (
        DocumentStatus.INDEXED,
        animals.id,
        {"team": "marine"},
        "otters.txt",
    )
    assert stack.container.upload_drop.exists("t1/doc_presigned1/otters.txt") is False  # staging is cleaned up
    assert stack.container.upload_claims.exists("t1/doc_presigned1.json") is False

    # Bytes under another tenant's path do not match the claims and are ignored.
    stack.container.upload_claims.put(
        "t2/doc_forged.json", json.dumps({**claims, "document_id": "doc_forged"}).encode()
    )
    stack.s3.put_object(Bucket=stack.resources.documents_bucket, Key="uploads/t2/doc_forged/x.txt", Body=b"hello")
    stack.drain()
    assert stack.container.store.get_document("t2", "doc_forged") is None


def test_events_sns_refuses_are_held_then_redelivered_with_their_ids(aws_env, monkeypatch) -> None:
    """SNS down during an upload and its indexing: the upload is accepted (202), the document is
    indexed, nothing is retried or dead-lettered, and the events reach subscribers once the
    events-redelivery function runs with SNS back, each with the id it was given."""
    from ragline.errors import DependencyUnavailable
    from ragline_emulator.functions import load_function

    stack = aws_env()
    sns = stack.container.outbox_events.bus
    publish_event = sns.publish_event
    refused: list[str] = []

    def sns_down(event):
        refused.append(event["type"])
        raise DependencyUnavailable("SNS answered 503")

    monkeypatch.setattr(sns, "publish_event", sns_down)
    accepted = stack.container.ingest.accept("t1", ABOUT_OTTERS.encode(), filename="otters.txt")
    stack.drain()
    doc = stack.container.store.get_document("t1", accepted.document.id)
    assert doc.status == DocumentStatus.INDEXED
    assert search_ids(stack, "t1", "otters sleeping") == [doc.id]
    assert refused == ["document.uploaded", "document.indexed"]  # each tried once, neither retried
    assert stack.container.store.get_job("t1", accepted.job_id).status == JobStatus.SUCCEEDED
    assert stack.dead_letters() == [] and stack.events() == []
    held = stack.container.outbox_events.outbox.held_events(10)
    assert [event["type"] for event in held] == ["document.uploaded", "document.indexed"]

    redelivery = load_function("events_redelivery", module_name="ragline_events_redelivery_flow")
    context = EmulatedLambdaContext(function_name="events-redelivery")
    assert redelivery.handler({}, context) == {"redelivered": 0, "still_held": True}  # SNS still down

    monkeypatch.setattr(sns, "publish_event", publish_event)
    assert redelivery.handler({}, context) == {"redelivered": 2, "still_held": False}
    arrived = stack.events()
    assert sorted((e["id"], e["type"], e["created_at"]) for e in arrived) == sorted(
        (e["id"], e["type"], e["created_at"]) for e in held
    )
    indexed = next(e for e in arrived if e["type"] == "document.indexed")
    assert indexed["attributes"] == {"event_type": "document.indexed", "tenant_id": "t1"}
    assert stack.container.outbox_events.outbox.held_events(10) == []
    assert redelivery.handler({}, context) == {"redelivered": 0, "still_held": False}


def test_one_batch_of_s3_notifications_is_one_sync_completed_per_tenant(aws_env) -> None:
    stack = aws_env()
    bucket = stack.resources.documents_bucket
    stack.s3.put_object(Bucket=bucket, Key="inbox/t1/old.txt", Body=ABOUT_BRIDGES.encode())
    stack.drain()
    stack.events()  # read past what came before

    # Five notifications, one batch (the event source mapping's BatchSize is 5):
    # three files added, one removed, one refused.
    stack.s3.put_object(Bucket=bucket, Key="inbox/t1/a.txt", Body=ABOUT_OTTERS.encode())
    stack.s3.put_object(Bucket=bucket, Key="inbox/t1/b.txt", Body=b"Glaciers carve U-shaped valleys as they grind.")
    stack.s3.put_object(Bucket=bucket, Key="inbox/t1/c.txt", Body=b"Coral reefs are built by colonies of animals.")
    stack.s3.delete_object(Bucket=bucket, Key="inbox/t1/old.txt")
    stack.s3.put_object(Bucket=bucket, Key="inbox/t1/tool.exe", Body=b"MZ\x90\x00\x03" + bytes(range(256)))
    assert stack.poller.poll_once() == 5
    events = stack.events()
    [synced] = [e for e in events if e["type"] == "sync.completed"]
    assert synced["tenant_id"] == "t1"
    assert synced["attributes"] == {"event_type": "sync.completed", "tenant_id": "t1"}
    data = synced["data"]
    assert {name: data[name] for name in ("added", "updated", "deleted", "failed")} == {
        "added": 3,
        "updated": 0,
        "deleted": 1,
        "failed": 1,
    }
    assert (data["source"], data["inbox"]) == ("inbox", "s3")
    assert [e["type"] for e in events][-1] == "sync.completed"  # after every change of the batch
    stack.drain()  # the three queued jobs: indexed after the burst, told by document.indexed
    assert [e["type"] for e in stack.events()] == ["document.indexed"] * 3


def test_a_deleted_knowledge_base_is_purged_by_the_ingest_queue(aws_env) -> None:
    stack = aws_env()
    kbs = stack.container.knowledge_bases
    animals = kbs.create("t1", CreateKnowledgeBaseRequest(name="animals"))
    accepted = stack.container.ingest.accept("t1", ABOUT_OTTERS.encode(), filename="otters.txt", kb_id=animals.id)
    stack.drain()
    assert stack.container.store.get_document("t1", accepted.document.id).status == DocumentStatus.INDEXED
    assert search_ids(stack, "t1", "otters") == [accepted.document.id]

    kbs.delete("t1", animals.id)  # the documents function: mark deleting, send the purge message
    assert kbs.get("t1", animals.id).status == "deleting"
    assert search_ids(stack, "t1", "otters") == []  # hidden before the purge ran
    stack.drain()  # the ingest function takes the message and purges
    assert stack.container.store.get_kb("t1", animals.id) is None
    assert stack.container.store.get_document("t1", accepted.document.id) is None
    assert stack.container.index.count("t1", Term("kb_id", (animals.id,))) == 0
