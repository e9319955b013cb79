"""The local ingest worker: threads that take jobs from the queue and run them to the end."""

from __future__ import annotations

import logging
import os
import sys
import threading

from ragline.errors import RaglineError
from ragline.ingest.service import INTERNAL_ERROR, IngestService
from ragline.models import DocumentStatus
from ragline.ports import JobQueue, MetadataStore

log = logging.getLogger(__name__)


class IngestWorker:
    def __init__(
        self,
        ingest: IngestService,
        queue: JobQueue,
        store: MetadataStore,
        *,
        threads: int = 1,
        max_attempts: int = 3,
        nice: int = 0,
    ) -> None:
        self.ingest = ingest
        self.queue = queue
        self.store = store
        self.threads = threads
        self.max_attempts = max_attempts
        self.nice = nice
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def recover(self) -> None:
        """Finish what a crash interrupted: re-queue processing jobs, fail the ones out of attempts."""
        for job in self.queue.recover_interrupted(self.max_attempts):
            self.ingest.fail_job(job, f"ingestion was interrupted {job.attempts} times; giving up")
        for doc in self.store.documents_with_status(DocumentStatus.PROCESSING):
            # Its job is queued again (above); until it runs, the document says so.
            self.store.update_document(doc.tenant_id, doc.id, status=DocumentStatus.QUEUED)
        self.ingest.finish_interrupted_deletes()

    def start(self) -> None:
        self.recover()
        for number in range(self.threads):
            thread = threading.Thread(target=self._run, name=f"ingest-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)

    def run_once(self) -> bool:
        """Process one queued job if there is one; False when the queue is empty."""
        job = self.queue.claim()
        if job is None:
            return False
        try:
            self.ingest.process(job)
        except RaglineError as exc:
            log.error("ingest job %s failed: %s", job.id, exc.message)
            self.ingest.fail_job(job, exc.message)  # the document says failed too, not processing forever
        except Exception:
            # A bug, not bad input: keep the stack trace, fail this job, keep the worker alive.
            log.exception("ingest job %s crashed", job.id)
            self.ingest.fail_job(job, INTERNAL_ERROR)
        return True

    def drain(self) -> None:
        while self.run_once():
            pass

    def _run(self) -> None:
        if self.nice:
            lower_thread_priority(self.nice)
        while not self._stop.is_set():
            if not self.run_once():
                self._wake.wait(1.0)
                self._wake.clear()


def lower_thread_priority(increment: int) -> None:
    """Raise the calling thread's nice value by `increment` (Linux: nice is per thread there).

    What the thread starts afterwards inherits it: the threads of a model session it creates, and
    the parser processes it spawns. So a worker that builds its own session and parser processes
    gets the cores only when the threads serving requests leave them idle."""
    if sys.platform != "linux":
        log.info("ingest threads keep their priority: lowering one thread's priority needs Linux")
        return
    thread = threading.get_native_id()
    current = os.getpriority(os.PRIO_PROCESS, thread)
    os.setpriority(os.PRIO_PROCESS, thread, min(current + increment, 19))
