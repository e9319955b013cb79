"""Webhook dispatcher function: SQS batches from the webhook deliveries queue, which holds the events of
the events topic (to fan out into deliveries) and delayed delivery messages (to attempt one delivery).
What each message means and why redelivery is safe: ragline.webhooks.messages.

A batch's records run at once on a thread pool, so one endpoint that hangs for the whole 15 s timeout
does not hold up the other nine deliveries. A record that raised (the table or a queue down, a body
that makes no sense) is reported as a batch item failure: SQS gives it back after the visibility
timeout, and after maxReceiveCount it goes to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType, async_process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ragline.container import get_container
from ragline.webhooks.messages import handle_message

logger = Logger(service="ragline-webhooks")
tracer = Tracer(service="ragline-webhooks", patch_modules=("botocore",))
metrics = Metrics(namespace="Ragline", service="ragline-webhooks")
processor = AsyncBatchProcessor(event_type=EventType.SQS)
webhooks = get_container().webhooks
senders = ThreadPoolExecutor(max_workers=10, thread_name_prefix="webhook")  # an SQS batch holds at most 10


async def handle_record(record: SQSRecord) -> str:
    kind = await asyncio.get_running_loop().run_in_executor(senders, handle_message, webhooks, record.body)
    metrics.add_metric(
        name="WebhookEventsFannedOut" if kind == "event" else "WebhookAttempts", unit=MetricUnit.Count, value=1
    )
    return kind


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return async_process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=context
    )
