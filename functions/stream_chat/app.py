"""Stream-chat function: POST /v1/kb/chat/stream as Server-Sent Events.

Python Lambdas cannot stream a response themselves, so this app runs under uvicorn (run.sh) and
the AWS Lambda Web Adapter layer relays it in response_stream mode. The adapter passes the API
Gateway request context (with the authorizer's tenant and scopes) as the x-amzn-request-context
header, which ragline.api.auth reads in authorizer mode. /health answers the adapter's readiness check.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger

from ragline.api.app import create_app
from ragline.container import get_container

logger = Logger()

container = get_container()
container.search  # noqa: B018 -- load the embedding model before the adapter's readiness check passes
app = create_app(container, routers=("stream", "health"))
