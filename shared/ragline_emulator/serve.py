"""`ragline serve --backend aws`: template.yaml's resources on the emulator at AWS_ENDPOINT_URL, and
besides the API what Lambda runs when deployed: the ingest function fed by the ingest queue and the
webhook dispatcher function fed by the webhook deliveries queue (their event source mappings), and
the events-redelivery function on its schedule."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ragline.background import Background
from ragline.config import get_settings
from ragline.container import Container, get_container
from ragline.errors import RaglineError
from ragline_emulator.event_sources import ScheduledInvoker, SqsEventSourcePoller
from ragline_emulator.functions import load_function
from ragline_emulator.provision import provision, settings_overrides


def emulate_aws(stack_name: str, *, data_dir: Path | None = None) -> None:
    """Create the template's resources on the emulator and point this process's settings at them."""
    if not os.environ.get("AWS_ENDPOINT_URL"):
        raise RaglineError(
            "ragline serve --backend aws runs against an AWS emulator: set AWS_ENDPOINT_URL (a moto server or "
            "LocalStack). Deployed, the functions in template.yaml serve the API instead.",
            error="Configuration error",
        )
    # Emulators take any credentials; without some, botocore refuses to sign at all.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no CloudWatch to read the EMF lines
    resources = provision(stack_name)
    overrides = {"backend": "aws", **settings_overrides(resources)}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    # The ingest function builds its services with get_container(), from the environment: make
    # that environment the provisioned one, so the function and the API share one container.
    os.environ.update({f"RAGLINE_{name.upper()}": str(value) for name, value in overrides.items()})
    get_settings.cache_clear()
    get_container.cache_clear()
    print(
        f"Emulated AWS at {os.environ['AWS_ENDPOINT_URL']}: bucket {resources.documents_bucket}, "
        f"queue {resources.ingest_queue_url}, topic {resources.events_topic_arn}, table {resources.table_name}, "
        f"webhook queue {resources.webhook_queue_url}",
        flush=True,
    )


def background_services(container: Container) -> Background:
    """The ingest and webhook queues' pollers and the events-redelivery schedule, running the real functions."""
    settings = container.settings
    # The functions build their services with get_container(): emulate_aws made that this container.
    handler: Any = load_function("ingest").handler
    assert settings.ingest_queue_url is not None and settings.webhook_queue_url is not None
    poller = SqsEventSourcePoller(settings.ingest_queue_url, handler)
    # As template.yaml's WebhookMessages event source: batches of up to 10, failures reported per record.
    webhooks = SqsEventSourcePoller(
        settings.webhook_queue_url,
        load_function("webhook_dispatcher").handler,
        function_name="WebhookDispatcherFunction",
        batch_size=10,
    )
    redelivery = ScheduledInvoker(
        load_function("events_redelivery").handler, settings.events_redelivery_seconds, name="events_redelivery"
    )
    return Background([poller, webhooks, redelivery], poller.notify)
