"""CloudFormation on LocalStack deploys template.yaml's storage and messaging resources as declared.

LocalStack's CloudFormation cannot run the SAM transform's functions here (no Docker), so the
stack is ``deployable_subset`` of the real template: its buckets, queues, queue policies and
topics, with references to everything else pruned. Expected values come from the template itself.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

import pytest

from tests.localstack.helpers import wait_until

RESOURCE_TYPES = {"AWS::S3::Bucket", "AWS::SQS::Queue", "AWS::SQS::QueuePolicy", "AWS::SNS::Topic"}
STACK_TIMEOUT_SECONDS = 90.0


def _provision_module() -> Any:
    # Another engineer writes provision.py and template.yaml: wait briefly for them, then say what is missing.
    try:
        from ragline_emulator import provision
    except ImportError as exc:
        pytest.fail(f"ragline_emulator.provision is missing: {exc}", pytrace=False)
    return provision


def _wait_for_stack(cfn: Any, stack_name: str) -> dict[str, Any]:
    deadline = time.monotonic() + STACK_TIMEOUT_SECONDS
    while True:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            return stack
        if not status.endswith("IN_PROGRESS") or time.monotonic() > deadline:
            events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
            reasons = [
                f"{e['LogicalResourceId']}: {e['ResourceStatus']} {e.get('ResourceStatusReason', '')}"
                for e in events
                if "FAILED" in e["ResourceStatus"]
            ]
            raise AssertionError(
                f"stack {stack_name} ended {status}: {stack.get('StackStatusReason')}\n" + "\n".join(reasons)
            )
        time.sleep(0.5)


def test_template_resources_deploy_with_their_attributes(aws: Callable[[str], Any]) -> None:
    provision = _provision_module()
    template = provision.load_template()
    subset = provision.deployable_subset(template, RESOURCE_TYPES)
    declared = template["Resources"]
    kept = subset["Resources"]
    assert {spec["Type"] for spec in kept.values()} == RESOURCE_TYPES
    assert set(kept) == {name for name, spec in declared.items() if spec["Type"] in RESOURCE_TYPES}
    # Real CloudFormation rejects a Ref/GetAtt to anything the template does not declare (LocalStack
    # is lenient), e.g. SAM's implicit resources such as <Api>UsagePlan, which are not in Resources.
    dangling = provision.references([kept, subset.get("Outputs", {}), subset.get("Conditions", {})]) - (
        set(kept) | set(subset.get("Parameters", {}))
    )
    assert not dangling, f"deployable_subset keeps references to undeclared resources: {sorted(dangling)}"

    cfn, sqs, s3, sns = aws("cloudformation"), aws("sqs"), aws("s3"), aws("sns")
    stack_name = f"ragline-cfn-{uuid.uuid4().hex[:6]}"
    cfn.create_stack(StackName=stack_name, TemplateBody=json.dumps(subset))
    stack = _wait_for_stack(cfn, stack_name)

    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    }
    assert set(physical) == set(kept), physical
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    # Queues: the template's settings, and the redrive policy pointing at the dead-letter queue.
    queue_url, dlq_url = physical[provision.INGEST_QUEUE], physical[provision.DEAD_LETTER_QUEUE]
    queue = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    dlq = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
    queue_props = declared[provision.INGEST_QUEUE]["Properties"]
    redrive = json.loads(queue["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == queue_props["RedrivePolicy"]["maxReceiveCount"]
    for name in ("VisibilityTimeout", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds"):
        if name in queue_props:
            assert int(queue[name]) == queue_props[name], name
    dlq_props = declared[provision.DEAD_LETTER_QUEUE]["Properties"]
    if "MessageRetentionPeriod" in dlq_props:
        assert int(dlq["MessageRetentionPeriod"]) == dlq_props["MessageRetentionPeriod"]
    policy = json.loads(queue["Policy"])
    assert any(
        s["Effect"] == "Allow" and s["Principal"] == {"Service": "s3.amazonaws.com"} for s in policy["Statement"]
    ), policy

    # The bucket: notifications to the ingest queue exactly as declared, and its guard rails.
    bucket = physical[provision.DOCUMENTS_BUCKET]
    bucket_props = declared[provision.DOCUMENTS_BUCKET]["Properties"]
    notifications = s3.get_bucket_notification_configuration(Bucket=bucket)
    actual = sorted(
        (event, rule["Value"], config["QueueArn"])
        for config in notifications.get("QueueConfigurations", [])
        for event in config["Events"]
        for rule in config["Filter"]["Key"]["FilterRules"]
    )
    expected = sorted(
        (config["Event"], config["Filter"]["S3Key"]["Rules"][0]["Value"], queue["QueueArn"])
        for config in bucket_props["NotificationConfiguration"]["QueueConfigurations"]
    )
    assert actual == expected
    if "PublicAccessBlockConfiguration" in bucket_props:
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert block == bucket_props["PublicAccessBlockConfiguration"]
    if "BucketEncryption" in bucket_props:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        wanted = bucket_props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert (
            rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
            == wanted["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
        )

    # The notification works: an object under inbox/ lands on the queue as an S3 event.
    s3.put_object(Bucket=bucket, Key="inbox/t1/cfn check.txt", Body=b"hello")

    def object_keys() -> list[str]:
        # Skips the s3:TestEvent messages that setting the notification configuration sends.
        messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1, MaxNumberOfMessages=10)
        bodies = [json.loads(m["Body"]) for m in messages.get("Messages", [])]
        return [r["s3"]["object"]["key"] for body in bodies for r in body.get("Records", [])]

    keys = wait_until(object_keys, timeout=20, interval=0, what="the S3 notification on the ingest queue")
    # URL-encoded as in AWS (which writes a space as "+", LocalStack as "%20": unquote_plus reads both).
    assert [unquote_plus(key) for key in keys] == ["inbox/t1/cfn check.txt"]
    assert " " not in keys[0]

    # The topic, and the stack's outputs naming what was created.
    topic_arn = physical[provision.EVENTS_TOPIC]
    topic = sns.get_topic_attributes(TopicArn=topic_arn)["Attributes"]
    display = declared[provision.EVENTS_TOPIC].get("Properties", {}).get("DisplayName")
    if display:
        assert topic["DisplayName"] == display
    assert outputs.get("DocumentsBucketName") == bucket
    assert outputs.get("IngestQueueUrl") == queue_url
    assert outputs.get("EventsTopicArn") == topic_arn
