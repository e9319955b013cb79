"""What every benchmark shares: reports and targets, statistics, data sets, data directories, the
real ingest path, and a real server in a subprocess.

Only the standard library is imported at module level, so `ragline --help` stays fast; numpy,
rich, httpx, psutil and ragline's heavy modules are imported where they are used.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from ragline.config import Settings
    from ragline.container import Container
    from ragline.models import Document

T = TypeVar("T")
INVALID_PDF = "invalid-truncated-linearized.pdf"
BENCH_TENANT = "bench"


class BenchError(Exception):
    """A benchmark cannot run (missing data, busy directory, server that will not start)."""


# ---- reports and targets -------------------------------------------------------------------------
@dataclass
class Target:
    """One figure checked against a goal. `kind` is "target" (from the brief) or "reference"
    (a published figure to compare with, not a requirement)."""

    name: str
    value: float | None
    goal: float
    op: str  # "<=" or ">="
    unit: str = ""
    kind: str = "target"

    @property
    def passed(self) -> bool | None:
        if self.value is None or math.isnan(self.value):
            return None
        return self.value <= self.goal if self.op == "<=" else self.value >= self.goal

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def at_most(name: str, value: float | None, goal: float, unit: str = "", kind: str = "target") -> Target:
    return Target(name, value, goal, "<=", unit, kind)


def at_least(name: str, value: float | None, goal: float, unit: str = "", kind: str = "target") -> Target:
    return Target(name, value, goal, ">=", unit, kind)


@dataclass
class Report:
    """A benchmark's outcome: the figures (written to JSON as they are), its targets and notes."""

    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self, started: float, load_before: tuple[float, float, float]) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "duration_s": round(time.time() - started, 1),
            "environment": environment(load_before),
            "figures": self.figures,
            "targets": [t.as_dict() for t in self.targets],
            "notes": self.notes,
        }


def environment(load_before: tuple[float, float, float]) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def default_out(name: str) -> Path:
    return Path("bench") / "results" / f"{name}.json"


# ---- statistics ----------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / mean in milliseconds, and the sample count."""
    ms = [s * 1000.0 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(sum(ms) / len(ms), 3) if ms else float("nan"),
    }


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


def timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    """Call fn(*args, **kwargs); return its result and the wall time it took in seconds."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


# ---- output --------------------------------------------------------------------------------------
def make_console(stderr: bool = False) -> Console:
    """Rich console; when the output is not a terminal (a log file, a pipe), 150 columns wide."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 150)


def make_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None) -> Table:
    """A table whose figure columns are right-aligned and text columns left-aligned."""
    from rich.table import Table

    def numeric(column: int) -> bool:
        cells = [row[column] for row in rows if row[column] is not None]
        return bool(cells) and all(isinstance(c, (int, float)) for c in cells)

    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for number, column in enumerate(columns):
        table.add_column(column, justify="right" if number > 0 and numeric(number) else "left")
    for row in rows:
        table.add_row(*(fmt(cell) for cell in row))
    return table


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def targets_table(targets: Sequence[Target], title: str = "targets") -> Table:
    rows = []
    for t in targets:
        verdict = {True: "[green]pass[/]", False: "[red]MISS[/]", None: "[yellow]n/a[/]"}[t.passed]
        if t.kind == "reference":
            verdict = {True: "above", False: "below", None: "n/a"}[t.passed]
        rows.append((t.name, t.value, f"{t.op} {fmt(t.goal)} {t.unit}".strip(), t.kind, verdict))
    return make_table(title, ("figure", "measured", "goal", "kind", "result"), rows)


def progress_bar(console: Console) -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


# ---- shared data ---------------------------------------------------------------------------------
def resolve_shared(path: Path) -> Path:
    shared = path.expanduser().resolve()
    if not (shared / "datasets").is_dir() or not (shared / "pdfs").is_dir():
        raise BenchError(
            f"the shared data folder {shared} is missing (or has no datasets/ and pdfs/): "
            "run from the repository root so ../shared exists, or pass --shared DIR"
        )
    return shared


def pdf_files(shared: Path) -> list[Path]:
    """Every PDF in shared/pdfs, the known-corrupt one included (benchmarks report it as failed)."""
    pdfs = sorted((shared / "pdfs").glob("*.pdf"))
    if not pdfs:
        raise BenchError(f"no PDFs in {shared / 'pdfs'}")
    return pdfs


def largest_valid_pdf(shared: Path) -> Path:
    valid = [p for p in pdf_files(shared) if p.name != INVALID_PDF]
    return max(valid, key=lambda p: p.stat().st_size)


@dataclass(frozen=True)
class BeirDoc:
    id: str
    title: str
    text: str

    def as_text(self) -> str:
        """What we ingest: the title, a blank line, the text (BEIR evaluates title + text)."""
        title = self.title.strip()
        return f"{title}\n\n{self.text}" if title else self.text


@dataclass
class BeirDataset:
    name: str
    directory: Path
    corpus: list[BeirDoc]
    queries: dict[str, str]

    def qrels(self, split: str) -> dict[str, dict[str, int]]:
        """query id -> {doc id: graded relevance}; rows scoring 0 or less are dropped."""
        path = self.directory / "qrels" / f"{split}.tsv"
        if not path.exists():
            raise BenchError(f"{self.name} has no {split} qrels ({path} is missing)")
        judged: dict[str, dict[str, int]] = {}
        with path.open(encoding="utf-8", newline="") as fh:
            lines = [line.rstrip("\r\n") for line in fh]
        for line in lines[1:]:  # header: query-id, corpus-id, score
            if not line.strip():
                continue
            query_id, doc_id, score = line.split("\t")
            if int(score) > 0:
                judged.setdefault(query_id, {})[doc_id] = int(score)
        return judged


def load_beir(shared: Path, name: str) -> BeirDataset:
    directory = shared / "datasets" / name
    corpus_path = next((p for p in (directory / "corpus.jsonl.gz", directory / "corpus.jsonl") if p.exists()), None)
    if corpus_path is None:
        raise BenchError(f"no corpus.jsonl(.gz) in {directory}")
    opener = gzip.open if corpus_path.suffix == ".gz" else open
    with opener(corpus_path, "rt", encoding="utf-8") as fh:
        corpus = [BeirDoc(str(d["_id"]), d.get("title") or "", d.get("text") or "") for d in map(json.loads, fh)]
    with (directory / "queries.jsonl").open(encoding="utf-8") as fh:
        queries = {str(q["_id"]): q["text"] for q in map(json.loads, fh)}
    return BeirDataset(name, directory, corpus, queries)


# ---- data directories and the real ingest path --------------------------------------------------
@contextmanager
def bench_data_dir(requested: Path | None, name: str) -> Iterator[Path]:
    """The directory a benchmark writes its index to: the one asked for (which must be empty, as
    benchmarks need a fresh index, and is kept), or a temporary one deleted afterwards."""
    if requested is not None:
        requested = requested.expanduser().resolve()
        if requested.exists() and any(requested.iterdir()):
            raise BenchError(f"--data-dir {requested} is not empty: benchmarks need a fresh directory")
        requested.mkdir(parents=True, exist_ok=True)
        yield requested
        return
    temporary = Path(tempfile.mkdtemp(prefix=f"ragline-bench-{name}-"))
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def bench_settings(data_dir: Path, **overrides: Any) -> Settings:
    from ragline.config import Settings

    return Settings(data_dir=data_dir, **overrides)


def warm_up(embedder: Any, rounds: int = 2) -> None:
    """onnxruntime's first runs at each input shape allocate and pick kernels: run short to
    full-length (256-token) batches first, to keep that out of every timing."""
    texts = [" ".join(["word"] * n) for n in (8, 32, 64, 128, 192, 250) for _ in range(8)]
    for _ in range(rounds):
        embedder.embed_documents(texts)
        embedder.embed_query("warm up the query path")


@dataclass
class Ingested:
    document: Document
    duplicate: bool
    seconds: float  # accept + claim + process
    accept_seconds: float


def ingest_now(container: Container, tenant_id: str, data: bytes, **accept: Any) -> Ingested:
    """The real ingest path, synchronously, as `ragline ingest` runs it: accept, claim, process."""
    started = time.perf_counter()
    accepted = container.ingest.accept(tenant_id, data, **accept)
    accepted_at = time.perf_counter()
    document = accepted.document
    if not accepted.duplicate and accepted.job_id is not None:
        job = container.store.claim(accepted.job_id)
        if job is not None:
            document = container.ingest.process(job) or document
    return Ingested(document, accepted.duplicate, time.perf_counter() - started, accepted_at - started)


def ingest_beir_doc(container: Container, tenant_id: str, doc: BeirDoc) -> Ingested:
    """A BEIR document as a text document (what POST /v1/kb/documents with JSON `text` stores)."""
    return ingest_now(
        container,
        tenant_id,
        doc.as_text().encode("utf-8"),
        content_type="text/plain",
        title=doc.title.strip() or None,
        metadata={"beir_id": doc.id},
        source="bench",
    )


# ---- a real server in a subprocess ---------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ragline.cli", *args]


def create_api_key(data_dir: Path, tenant_id: str) -> str:
    done = subprocess.run(
        _cli("keys", "create", "--tenant", tenant_id, "--data-dir", str(data_dir)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise BenchError(f"`ragline keys create` failed: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[0]


class RaglineServer:
    """`python -m ragline.cli serve` on 127.0.0.1 and a free port; stopped by its PID."""

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        # Benchmarks drive one key far past a client's 120 requests/minute: they measure the work, not the
        # rate limiter (auth_overhead measures that), so the server's limit is out of their way.
        self.env = {**os.environ, "RAGLINE_RATE_LIMIT_PER_MINUTE": "1000000000", **(env or {})}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "the server is not running"
        return self._process.pid

    def __enter__(self) -> RaglineServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, ready_timeout: float = 180.0) -> float:
        """Start and wait until /health answers; return the seconds that took."""
        self._log = self.log_path.open("wb")
        started = time.perf_counter()
        self._process = subprocess.Popen(
            _cli("serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(self.data_dir)),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
        )
        self._wait_healthy(ready_timeout)
        return time.perf_counter() - started

    def _wait_healthy(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise BenchError(
                    f"the server exited with code {self._process.returncode}; see {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise BenchError(f"the server did not answer /health within {timeout:.0f} s; see {self.log_path}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()  # SIGTERM to this PID only: uvicorn shuts down, the index snapshots
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None


def rss_mb(pid: int) -> float:
    """Resident set size of a process and its children, in MB (10^6 bytes, as /health/detailed)."""
    import psutil

    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return total / 1e6
