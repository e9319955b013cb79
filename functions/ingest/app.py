"""Ingest function: SQS batches of job messages and S3 drop-folder/upload notifications.

Each record is handled on its own; the ones that must come back are reported as batch item
failures (the event source mapping has ReportBatchItemFailures), so one poison message neither
blocks nor re-runs the rest of its batch. What a record means and why redelivery is safe:
ragline.ingest.messages.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ragline.container import get_container

logger = Logger(service="ragline-ingest")
tracer = Tracer(service="ragline-ingest")
metrics = Metrics(namespace="Ragline", service="ragline-ingest")
processor = BatchProcessor(event_type=EventType.SQS)
messages = get_container().ingest_messages


@tracer.capture_method
def handle_record(record: SQSRecord) -> None:
    receive_count = int(record.attributes.approximate_receive_count or 1)
    messages.handle(record.body, receive_count=receive_count)
    metrics.add_metric(name="IngestMessagesHandled", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # One batch is one drop-folder burst: what its S3 notifications changed is told by one
    # sync.completed per tenant when the batch is done.
    with messages.drop_folder_burst():
        return process_partial_response(event=event, record_handler=handle_record, processor=processor, context=context)
