"""Events-redelivery function: every minute (EventBridge schedule), publishes to SNS the events the
other functions held in the table while SNS was down, oldest first, with their original ids.

Still down: the held events stay for the next run (a warning and the EventsStillHeld metric, not a
failed invocation: the schedule is the retry).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ragline.container import get_container

logger = Logger(service="ragline-events")
tracer = Tracer(service="ragline-events", patch_modules=("botocore",))
metrics = Metrics(namespace="Ragline", service="ragline-events")
events = get_container().outbox_events
BATCH = 500  # per run; a minute's timeout publishes far more, but the next run is a minute away anyway


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run = events.redeliver(limit=BATCH)
    if run.still_down:
        logger.warning("held events stay held", extra={"sent": run.sent, "reason": run.still_down})
    metrics.add_metric(name="EventsRedelivered", unit=MetricUnit.Count, value=run.sent)
    metrics.add_metric(name="EventsStillHeld", unit=MetricUnit.Count, value=int(run.still_down is not None))
    return {"redelivered": run.sent, "still_held": run.still_down is not None}
