"""Chat over WebSocket, deployed: API Gateway's WebSocket API calls this function on $connect (after the key
authorizer), on every message ($default) and on $disconnect; answers go back through its @connections API.

The handler only reads the event; the protocol is ragline.chat.websocket, the connection's rules
ragline.chat.connections. The embedding model loads during init (full CPU), so the first question's first
token does not wait for it.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_websocket_event import APIGatewayWebSocketEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from ragline.container import get_container
from ragline.errors import Forbidden, Unauthorized

logger = Logger()
tracer = Tracer(patch_modules=("botocore",))  # AWS SDK calls only: patching all X-Ray knows costs ~0.15 s of init
metrics = Metrics()  # namespace: POWERTOOLS_METRICS_NAMESPACE

container = get_container()
container.search  # noqa: B018 -- the embedding model and the index, at init
chat = container.connection_chat


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: LambdaContext) -> dict[str, Any]:
    request = event.request_context
    if request.event_type == "CONNECT":
        try:
            chat.connect(request.connection_id, request.connected_at / 1000, request.get("authorizer"))
        except (Unauthorized, Forbidden) as exc:  # API Gateway answers the upgrade with this status
            logger.info("connection refused", extra={"reason": exc.message})
            return {"statusCode": exc.status}
        return {"statusCode": 200}
    if request.event_type == "DISCONNECT":
        chat.disconnect(request.connection_id)
        return {"statusCode": 200}
    # A binary frame arrives base64-encoded: the protocol answers it with an error (messages are JSON text).
    frame = base64.b64decode(event.body or "") if event.get("isBase64Encoded") else event.body or ""
    deadline = time.time() + context.get_remaining_time_in_millis() / 1000
    chat.receive(
        request.connection_id, frame, container.connection_push, deadline=deadline, ip=request.identity.source_ip
    )
    return {"statusCode": 200}
