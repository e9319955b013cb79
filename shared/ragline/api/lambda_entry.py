"""One API Lambda function: some of the routers behind Mangum, with Powertools around the handler.

The functions in functions/ differ only in which routers they serve and what they build during
init (Lambda runs init at full CPU, before the first request is waiting).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum

from ragline.api.app import create_app
from ragline.container import Container, get_container

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


@dataclass
class ApiFunction:
    container: Container
    handler: Handler


def api_function(routers: Sequence[str], *, build_at_init: Sequence[str] = ()) -> ApiFunction:
    """The handler serving these routers; ``build_at_init`` names container members to build now."""
    logger = Logger()
    tracer = Tracer(patch_modules=("botocore",))  # AWS SDK calls only: patching all X-Ray knows costs ~0.15 s
    metrics = Metrics()  # namespace: POWERTOOLS_METRICS_NAMESPACE
    container = get_container()
    for member in build_at_init:
        getattr(container, member)
    asgi = Mangum(create_app(container, routers=tuple(routers)), lifespan="off")
    register_snapstart_hooks(container)

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    @tracer.capture_lambda_handler
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return asgi(event, context)

    return ApiFunction(container, handler)


def register_snapstart_hooks(container: Container) -> None:
    """With SnapStart (template parameter SnapStart=PublishedVersions), Lambda snapshots the process
    after init and resumes copies of it: each copy must drop init's connections and reseed ``random``
    (retry jitter would otherwise be the same in every copy). ``snapshot_restore_py`` ships with
    Lambda's managed Python runtimes only; elsewhere nothing is ever restored."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ModuleNotFoundError:
        return
    register_before_snapshot(before_snapshot, container)
    register_after_restore(after_restore, container)


def before_snapshot(container: Container) -> None:
    if "embedder" in vars(container):
        # The first inference allocates ONNX Runtime's buffers (~60 ms): pay it once, into the snapshot.
        container.embedder.embed_query("snapshot priming")


def after_restore(container: Container) -> None:
    random.seed()  # from os.urandom: distinct in every restored copy
    container.after_restore()
