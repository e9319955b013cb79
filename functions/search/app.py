"""Search function: POST /v1/kb/search through API Gateway (REST, Lambda proxy), FastAPI via Mangum.

The container is built lazily at import (clients and models are kept for the container's life);
the embedding model loads here, during init, which Lambda runs at full CPU and before the first request.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum

from ragline.api.app import create_app
from ragline.container import get_container

logger = Logger()
tracer = Tracer(patch_modules=("botocore",))  # AWS SDK calls only: patching all X-Ray knows costs ~0.15 s of init
metrics = Metrics()  # namespace: POWERTOOLS_METRICS_NAMESPACE

container = get_container()
container.search  # noqa: B018 -- load the embedding model and open the index during init
asgi = Mangum(create_app(container, background=False, routers=("search",)), lifespan="off")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return asgi(event, context)
