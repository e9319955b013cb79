"""API Gateway REQUEST authorizer: checks x-api-key against the key store and passes the key's
tenant, scopes and id to the functions in the authorizer context.

Only the metadata store is touched (no embedding model, no index). For the REST API the policy allows
every route of the stage, so API Gateway's authorizer cache (keyed on x-api-key) serves later requests
to any route; each function still checks the scope its route needs.

It also guards $connect of the WebSocket chat API (its methodArn ends in ``/$connect``; that authorizer has
no identity source, so it runs for every upgrade): a bad key is refused at the upgrade, a good one is
allowed to connect. A connection without the header, which is all a browser can open, is allowed too,
as *pending* (ragline.chat.websocket.PENDING_CONTEXT): functions/chat_ws accepts nothing on it but an auth
message carrying a valid key, sent within RAGLINE_WS_AUTH_TIMEOUT_SECONDS of connecting.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    APIGatewayAuthorizerResponse,
    APIGatewayAuthorizerResponseWebSocket,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from ragline.chat.websocket import PENDING_CONTEXT
from ragline.container import get_container
from ragline.errors import Unauthorized
from ragline.keys import authenticate

logger = Logger()
tracer = Tracer(patch_modules=("botocore",))  # AWS SDK calls only: patching all X-Ray knows costs ~0.15 s of init
metrics = Metrics()  # namespace: POWERTOOLS_METRICS_NAMESPACE

container = get_container()


class Denied(Exception):
    """Raised with the message "Unauthorized": the one answer API Gateway turns into a 401."""


def _header(event: APIGatewayAuthorizerRequestEvent, name: str) -> str | None:
    # Header names keep the client's case in REQUEST authorizer events.
    return next((value for key, value in (event.headers or {}).items() if key.lower() == name), None)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@event_source(data_class=APIGatewayAuthorizerRequestEvent)
def handler(event: APIGatewayAuthorizerRequestEvent, context: LambdaContext) -> dict[str, Any]:
    presented = _header(event, "x-api-key")
    websocket_connect = event.method_arn.endswith("/$connect")
    if websocket_connect and presented is None:
        return _connect(event, "pending", dict(PENDING_CONTEXT))  # the first message must authenticate
    try:
        principal = authenticate(container.store, presented)
    except Unauthorized as exc:
        logger.info("key refused", extra={"reason": exc.message})
        metrics.add_metric(name="KeyRefused", unit=MetricUnit.Count, value=1)
        raise Denied("Unauthorized") from None  # the message is the contract; the reason stays in our logs
    # Context values must be strings, numbers or booleans: scopes travel comma-joined.
    context_values = {
        "tenant_id": principal.tenant_id,
        "scopes": ",".join(sorted(scope.value for scope in principal.scopes)),
        "key_id": principal.key_id,
        # The key's own rate limit ("" when it follows the server's setting).
        "rate_limit_per_minute": str(principal.rate_limit_per_minute or ""),
    }
    if websocket_connect:
        return _connect(event, principal.key_id, context_values)
    arn = event.parsed_arn
    response = APIGatewayAuthorizerResponse(
        principal_id=principal.key_id,
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
        partition=arn.partition,
        context=context_values,
    )
    response.allow_all_routes()  # arn:…:<api>/<stage>/*/*
    return response.asdict()


def _connect(event: APIGatewayAuthorizerRequestEvent, principal_id: str, context: dict[str, str]) -> dict[str, Any]:
    """Allow this WebSocket upgrade ($connect is the only route a WebSocket authorizer guards)."""
    response = APIGatewayAuthorizerResponseWebSocket.from_route_arn(event.method_arn, principal_id, context)
    response.allow_route("$connect")  # arn:…:<api>/<stage>/$connect
    return response.asdict()
