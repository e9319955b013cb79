"""Parsing runs in a parser process under RAGLINE_PARSE_TIMEOUT_SECONDS: a document whose parsing
takes longer fails with a readable error, and the worker goes on to the next job."""

from __future__ import annotations

import threading
import time

import pytest

from ragline.errors import DocumentParseError
from ragline.ingest import parse_budget
from ragline.ingest.parse_budget import ParserCrashed, ParserProcesses
from ragline.ingest.parsers import HTML, MARKDOWN, PDF, TEXT, parse
from ragline.models import DocumentStatus
from ragline_bench.adversarial import SLOW_HTML
from tests.support import make_blank_pdf, make_pdf


@pytest.fixture
def processes():
    pool = ParserProcesses()
    yield pool
    for child in pool._idle:
        child.kill()


def _result(parsed):
    return parsed.title, parsed.page_count, [(b.text, b.page, b.section) for b in parsed.blocks]


def test_a_parse_over_budget_fails_the_document_and_the_worker_goes_on(local):
    world = local(parse_timeout_seconds=0.5)
    started = time.monotonic()
    slow = world.ingest(SLOW_HTML, "slow.html")
    assert time.monotonic() - started < 30
    assert slow.status == DocumentStatus.FAILED
    assert slow.error == "parsing took longer than 0.5 s"
    assert world.container.queue.latest_job_id("t1", slow.id) is not None
    after = world.ingest(b"Sea otters hold hands while they sleep.", "next.txt")
    assert after.status == DocumentStatus.INDEXED and after.chunk_count == 1


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"Plain words. More words.", TEXT),
        (b"Intro.\n\n# Install\nRun make.\n\n## Linux ##\nUse apt.\n", MARKDOWN),
        (b"<html><title>Docs</title><body><h1>Setup</h1><p>Do this.</p></body></html>", HTML),
        (make_pdf(["First page.", "Second page."], title="Fruit"), PDF),
    ],
)
def test_a_parser_process_gives_what_parsing_in_process_gives(processes, data, content_type):
    assert _result(processes.parse(data, content_type, None, 30)) == _result(parse(data, content_type))


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        (b"", TEXT, "empty file"),
        (b"%PDF-1.4\n1 0 obj garbage", PDF, "corrupt PDF"),
        (make_blank_pdf(), PDF, "no extractable text"),  # raised after the pages were read
    ],
)
def test_parse_errors_come_back_as_they_are_and_the_process_is_kept(processes, data, content_type, message):
    with pytest.raises(DocumentParseError, match=message):
        list(processes.parse(data, content_type, None, 30).blocks)
    assert len(processes._idle) == 1


def test_one_process_serves_document_after_document(processes):
    first = processes.parse(b"one", TEXT, None, 30)
    list(first.blocks)
    (child,) = processes._idle
    for _ in range(20):
        started = time.perf_counter()
        list(processes.parse(b"Small text.", TEXT, None, 30).blocks)
        assert time.perf_counter() - started < 0.5  # ~0.1 ms more than in-process here
    assert processes._idle == [child] and child.alive()


def test_the_budget_counts_waiting_for_the_parser_not_using_its_blocks(processes):
    parsed = processes.parse(make_pdf(["Page one.", "Page two.", "Page three."]), PDF, None, 1.0)
    for _ in parsed.blocks:
        time.sleep(0.6)  # embedding, say: 1.8 s in all, well over the budget


def test_a_timed_out_process_is_killed_and_the_next_document_gets_a_new_one(processes):
    list(processes.parse(b"warm", TEXT, None, 30).blocks)
    (first,) = processes._idle
    with pytest.raises(DocumentParseError, match=r"^parsing took longer than 0.3 s$"):
        list(processes.parse(SLOW_HTML, HTML, None, 0.3).blocks)
    assert not first.alive() and processes._idle == []
    list(processes.parse(b"next", TEXT, None, 30).blocks)
    assert len(processes._idle) == 1 and processes._idle[0] is not first


def test_a_caller_that_stops_early_leaves_no_busy_process(processes):
    before = set(parse_budget._started)
    parsed = processes.parse(make_pdf([f"Page {n}." for n in range(30)]), PDF, None, 30)
    (child,) = set(parse_budget._started) - before
    next(parsed.blocks)
    parsed.blocks.close()  # type: ignore[attr-defined]
    assert not child.alive() and processes._idle == []


def test_a_parser_bug_is_raised_with_its_trace_and_the_process_is_kept(processes):
    with pytest.raises(ParserCrashed, match="TypeError"):
        processes.parse("text, not bytes", TEXT, None, 30)  # type: ignore[arg-type]
    assert len(processes._idle) == 1


def test_a_parser_process_that_dies_is_a_transient_error(processes):
    list(processes.parse(b"warm", TEXT, None, 30).blocks)
    (child,) = processes._idle
    threading.Timer(0.3, child.process.kill).start()
    with pytest.raises(ChildProcessError, match=r"exited unexpectedly \(exit code -9\)"):
        list(processes.parse(SLOW_HTML, HTML, None, 30).blocks)
    assert isinstance(ChildProcessError(), OSError)  # so IngestService.process re-queues the job


def test_it_needs_no_shared_memory_as_on_aws_lambda(processes, monkeypatch):
    """Lambda has no /dev/shm: multiprocessing's semaphores, and so its Queue and Pool, fail there."""
    import _multiprocessing
    import multiprocessing
    import multiprocessing.synchronize  # reads SemLock's limits at import; creating one is what fails

    def no_shm(*args, **kwargs):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(_multiprocessing, "SemLock", no_shm)
    with pytest.raises(OSError):
        multiprocessing.get_context("spawn").Queue()
    assert _result(processes.parse(b"# Title\nbody", MARKDOWN, None, 30))[0] == "Title"


def test_the_service_parses_through_the_budgeted_processes():
    parsed = parse_budget.parse_with_budget(b"hello", TEXT, "a.txt", 30)
    assert [b.text for b in parsed.blocks] == ["hello"]
    assert parse_budget._processes._idle
