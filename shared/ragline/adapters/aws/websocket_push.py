"""The ConnectionPush port on API Gateway's @connections management API: how the deployed WebSocket chat
(functions/chat_ws) writes to a client, whose socket API Gateway holds. The endpoint is the WebSocket API's
stage, ``https://<api id>.execute-api.<region>.amazonaws.com/<stage>`` (RAGLINE_WS_CALLBACK_URL)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from ragline.adapters.aws import clients
from ragline.errors import ConnectionGone


class ApiGatewayConnectionPush:
    def __init__(self, endpoint_url: str, *, region: str | None = None, client: Any = None) -> None:
        self.endpoint_url = endpoint_url
        # One client per process and endpoint (clients caches it): built on the first message, then kept.
        self._client = clients.ServiceClient(
            "apigatewaymanagementapi", region=region, endpoint_url=endpoint_url, given=client
        )

    def send(self, connection_id: str, text: str) -> None:
        with clients.unavailable_when_down("API Gateway @connections"):
            try:
                self._client().post_to_connection(ConnectionId=connection_id, Data=text.encode("utf-8"))
            except ClientError as exc:
                if clients.error_code(exc) == "GoneException":  # 410: the client has disconnected
                    raise ConnectionGone(connection_id) from exc
                raise

    def disconnect(self, connection_id: str) -> None:
        with clients.unavailable_when_down("API Gateway @connections"):
            try:
                self._client().delete_connection(ConnectionId=connection_id)
            except ClientError as exc:
                if clients.error_code(exc) != "GoneException":
                    raise
