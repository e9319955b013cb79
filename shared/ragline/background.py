"""What a long-running server does besides answering requests: run ingestion.

Local backend: the ingest worker threads and the drop-folder watcher. AWS backend (emulated,
`ragline serve --backend aws`): a poller that feeds the ingest queue to the real ingest
function, as Lambda's event source mapping does when deployed, and the events-redelivery
function called on its schedule.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import ragline
from ragline.container import Container
from ragline.errors import ConfigurationError


class Service(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


@dataclass
class Background:
    services: list[Service]
    notify: Callable[[], None]  # "new work was queued": wakes the local worker at once

    def start(self) -> None:
        for service in self.services:
            service.start()

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()


def functions_dir() -> Path:
    return Path(ragline.__file__).resolve().parents[2] / "functions"


def load_function(name: str, *, module_name: str | None = None) -> ModuleType:
    """A Lambda function's module from functions/<name>/app.py (they are files, not a package).

    Each call imports it afresh, as a new execution environment would (``module_name`` tells
    several such imports apart).
    """
    path = functions_dir() / name / "app.py"
    if not path.is_file():
        raise ConfigurationError(f"{path} is missing: the aws backend runs the functions from a source checkout")
    module_name = module_name or f"ragline_function_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def background_services(container: Container) -> Background:
    settings = container.settings
    if settings.backend == "aws":
        from ragline.adapters.aws.sqs_poller import ScheduledInvoker, SqsEventSourcePoller

        # The functions build their services with get_container(): the caller made that this container.
        handler: Any = load_function("ingest").handler
        assert settings.ingest_queue_url is not None
        poller = SqsEventSourcePoller(settings.ingest_queue_url, handler)
        redelivery = ScheduledInvoker(
            load_function("events_redelivery").handler, settings.events_redelivery_seconds, name="events_redelivery"
        )
        return Background([poller, redelivery], poller.notify)

    from ragline.inbox import InboxSync, InboxWatcher
    from ragline.worker import IngestWorker

    worker = IngestWorker(
        container.ingest,
        container.queue,
        container.store,
        threads=settings.ingest_workers,
        max_attempts=settings.max_ingest_attempts,
    )
    watcher = InboxWatcher(
        InboxSync(settings.inbox, container.ingest, container.store, worker.notify),
        settle_seconds=settings.inbox_settle_seconds,
    )
    return Background([worker, watcher], worker.notify)
