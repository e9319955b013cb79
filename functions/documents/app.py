"""Documents function: uploads (JSON text, multipart, presigned S3 URLs), list, get, delete, jobs,
and /health, /health/detailed, through API Gateway (REST, Lambda proxy), FastAPI via Mangum.

Accepting a document stores it and enqueues a job on SQS for the ingest function: no embedding
here, so the model is not loaded at init (delete and /health/detailed load it when they need it).
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
asgi = Mangum(create_app(container, background=False, routers=("documents", "health")), lifespan="off")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return asgi(event, context)
