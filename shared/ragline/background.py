"""What a long-running server does besides answering requests: run ingestion.

Local backend: the ingest worker threads and the drop-folder watcher. The emulated AWS backend
(`ragline serve --backend aws`) builds its own from ragline_emulator.serve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ragline.container import Container


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


def background_services(container: Container) -> Background:
    """The local backend's: the ingest worker threads and the drop-folder watcher."""
    from ragline.inbox import InboxSync, InboxWatcher
    from ragline.worker import IngestWorker

    settings = container.settings
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
